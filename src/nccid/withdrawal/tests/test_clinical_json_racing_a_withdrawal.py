"""A patient withdrawn just after their sheet's commit, before its clinical JSON is written
(the warehouse writes it on commit): nothing of theirs is left in the warehouse, the set rows
or the catalogue. Both orders are driven step by step, not by timing."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent
from nccid.clinical.signals import AcceptedRecord
from nccid.warehouse import service
from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.models import PatientSet
from nccid.withdrawal.services import withdraw

from .conftest import PEOPLE, keys_but_markers, send_sheet

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _held_of(warehouse, pseudonym: str) -> list[str]:
    return [key for key in keys_but_markers(warehouse) if pseudonym in key]


def _catalogued(pseudonym: str) -> bool:
    with connect_catalogue() as con:
        return con.execute("SELECT count(*) FROM patients WHERE pseudonym = ?",
                           [pseudonym]).fetchone()[0] > 0


def test_the_writer_skips_a_patient_withdrawn_after_the_commit(
        site, keyring, manager, make_user, local_warehouse, django_capture_on_commit_callbacks):
    person, other = PEOPLE[4], PEOPLE[5]
    pseudonym = keyring.pseudonym(person.nhs_number)
    with django_capture_on_commit_callbacks(execute=False) as after_commit:
        upload = send_sheet(site, make_user("uploader", site), [person, other])
    assert upload.status == "accepted", upload.status

    withdraw(manager, pseudonym, "Objected", refresh=False)  # commits before the writer runs
    for callback in after_commit:
        callback()

    assert _held_of(local_warehouse, pseudonym) == []
    assert not PatientSet.objects.filter(pseudonym=pseudonym).exists()
    assert _held_of(local_warehouse, keyring.pseudonym(other.nhs_number))  # the rest is written
    refresh_catalogue()
    assert not _catalogued(pseudonym)


def test_a_withdrawal_committed_while_the_writer_writes_is_undone_by_the_writer(
        site, keyring, manager, local_warehouse, monkeypatch):
    person = PEOPLE[4]
    pseudonym = keyring.pseudonym(person.nhs_number)
    record = AcceptedRecord(pseudonym, None, "positive", {"age": 50})
    assign_sets = service.assign_sets

    def withdrawn_after_the_check(site, pseudonyms, **kwargs):
        sets = assign_sets(site, pseudonyms, **kwargs)
        withdraw(manager, pseudonym, "Objected", refresh=False)  # purges before the JSON exists
        return sets

    monkeypatch.setattr(service, "assign_sets", withdrawn_after_the_check)
    assert service.write_clinical_records(site, [record]) == 0

    assert _held_of(local_warehouse, pseudonym) == []
    assert not PatientSet.objects.filter(pseudonym=pseudonym).exists()


def test_the_sweep_removes_what_a_writer_that_checked_first_wrote_after_the_withdrawal(
        site, keyring, manager, local_warehouse, monkeypatch):
    person = PEOPLE[4]
    pseudonym = keyring.pseudonym(person.nhs_number)
    record = AcceptedRecord(pseudonym, None, "positive", {"age": 50})
    withdraw(manager, pseudonym, "Objected", refresh=False)
    # the writer read the list before the withdrawal committed, wrote after it had purged, and
    # its process died before it read the list again
    monkeypatch.setattr(service, "_withdrawn", lambda pseudonyms: set(), raising=False)
    service.write_clinical_records(site, [record])
    assert _held_of(local_warehouse, pseudonym) and PatientSet.objects.filter(pseudonym=pseudonym).exists()

    refresh_catalogue()  # sweeps first

    assert _held_of(local_warehouse, pseudonym) == []
    assert not PatientSet.objects.filter(pseudonym=pseudonym).exists()
    assert not _catalogued(pseudonym)
    assert AuditEvent.objects.filter(action="withdrawal.sweep", pseudonym=pseudonym).exists()
