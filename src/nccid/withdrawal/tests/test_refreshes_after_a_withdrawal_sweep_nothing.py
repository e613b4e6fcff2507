"""Every catalogue refresh sweeps first: it removes what reached the warehouse after a
withdrawal. Once a withdrawal is done, nothing of the patient is left, so later refreshes find
and record nothing, on S3 too, where a listing can still name the patient's emptied folder
(SeaweedFS keeps it); a clinical JSON written late is still found, and swept once. A sweep
that removes nothing is neither audited nor logged."""

from __future__ import annotations

import logging

import pytest

from nccid.accounts.models import AuditEvent
from nccid.clinical.signals import AcceptedRecord
from nccid.warehouse import service
from nccid.warehouse.catalogue import refresh_catalogue
from nccid.withdrawal.services import remove_late_arrivals, sweep, withdraw

from .conftest import PEOPLE, keys_but_markers

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _sweeps() -> int:
    return AuditEvent.objects.filter(action="withdrawal.sweep").count()


def test_refreshes_after_a_withdrawal_find_nothing_to_sweep(patients, manager, backend, caplog):
    gone, _kept = patients
    assert service.sync_clinical() == 2  # their JSON, as the sheet's commit writes it
    assert [key for key in backend.list() if key.startswith(("training/data/", "validation/data/"))
            and gone.pseudonym in key]
    withdraw(manager, gone.pseudonym, "Consent withdrawn")  # refreshes the catalogue itself

    with caplog.at_level(logging.WARNING, logger="nccid.withdrawal"):
        assert sweep() == []  # nothing found: no purge of the patient again
        refresh_catalogue()

    assert _sweeps() == 0
    assert "arrived after its withdrawal" not in caplog.text


def test_a_sweep_that_removes_nothing_records_nothing(patients, manager, caplog):
    gone, _kept = patients
    withdraw(manager, gone.pseudonym, "Consent withdrawn", refresh=False)

    with caplog.at_level(logging.WARNING, logger="nccid.withdrawal"):
        remove_late_arrivals([gone.pseudonym])  # as a writer that found the patient withdrawn

    assert _sweeps() == 0
    assert "arrived after its withdrawal" not in caplog.text


def test_a_clinical_json_written_after_the_withdrawal_is_swept_once(
        site, keyring, manager, backend, monkeypatch):
    pseudonym = keyring.pseudonym(PEOPLE[4].nhs_number)
    withdraw(manager, pseudonym, "Objected", refresh=False)
    # a writer that read the withdrawn list before the withdrawal, and wrote after its purge
    monkeypatch.setattr(service, "_withdrawn", lambda pseudonyms: set(), raising=False)
    service.write_clinical_records(site, [AcceptedRecord(pseudonym, None, "positive", {"age": 50})])
    assert [key for key in keys_but_markers(backend) if pseudonym in key]

    assert sweep() == [pseudonym]
    assert [key for key in keys_but_markers(backend) if pseudonym in key] == []
    assert sweep() == []  # its emptied folder is not taken for a new arrival
    assert AuditEvent.objects.filter(action="withdrawal.sweep", pseudonym=pseudonym).count() == 1
