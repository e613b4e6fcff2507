"""A site's sheet is checked (the withdrawal list read) and then saved to wait for
confirmation; a withdrawal committed between the two looks for waiting checks before this one
exists. The check reads the list again once saved, and the sweep before every catalogue
refresh looks in waiting checks too: none keeps a withdrawn patient's rows or sealed number."""

from __future__ import annotations

import json

import pytest

from nccid.accounts.models import AuditEvent
from nccid.clinical import services
from nccid.clinical.models import Upload
from nccid.clinical.services import SEALED, WITHDRAWN_ROW, preview_upload
from nccid.clinical.tests.helpers import sheet_of
from nccid.imaging.intake import ingest_many
from nccid.imaging.models import PendingImage
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.withdrawal.models import Withdrawal
from nccid.withdrawal.services import sweep, withdraw

from .conftest import PEOPLE

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
LEAVING, STAYING = PEOPLE[4], PEOPLE[5]


def _sheet() -> bytes:
    return sheet_of("positive", [{"age": 40}, {"age": 60}], [LEAVING, STAYING])


def _withdrawn_rows(upload: Upload) -> list[int]:
    return [e["row"] for e in upload.errors if e["reason"] == WITHDRAWN_ROW]


def _holds_only(upload: Upload, kept: str, gone: str) -> None:
    """The waiting check keeps ``kept`` and nothing of ``gone`` (rows, sealed number, counts)."""
    stored = Upload.objects.get(pk=upload.pk)
    assert stored.status == "preview"
    assert gone not in json.dumps(stored.staged)
    assert [r["pseudonym"] for r in stored.staged["records"]] == [kept]
    assert list(stored.staged[SEALED]) == [kept]
    for shown in (upload, stored):  # what the caller shows and what the check page reads
        assert (shown.accepted_rows, shown.rejected_rows, shown.new_records) == (1, 1, 1)
        assert _withdrawn_rows(shown) == [2]


def test_a_withdrawal_between_the_check_and_its_save_leaves_the_check_without_the_patient(
        site, keyring, manager, local_warehouse, monkeypatch, django_capture_on_commit_callbacks):
    gone, kept = keyring.pseudonym(LEAVING.nhs_number), keyring.pseudonym(STAYING.nhs_number)
    waiting = ingest_many([to_bytes(synthetic_instance(LEAVING, plant=False, study=7, instance=1))],
                          site, "test")
    assert [o.status for o in waiting] == ["pending"]  # sent by hospital number: no link yet
    planned = services._plan

    def plan_after_a_withdrawal(*args, **kwargs):
        monkeypatch.setattr(services, "_plan", planned)  # once: the withdrawal's own plans run as usual
        withdraw(manager, gone, "Patient objected", refresh=False)  # another worker, meanwhile
        return planned(*args, **kwargs)

    monkeypatch.setattr(services, "_plan", plan_after_a_withdrawal)
    with django_capture_on_commit_callbacks(execute=True):  # (a test runs in a transaction)
        upload = preview_upload(site, "positive", "s.xlsx", _sheet(), manager)

    _holds_only(upload, kept, gone)
    assert not PendingImage.objects.exists()  # the sheet paired its hospital number with the patient


def test_the_sweep_removes_a_withdrawn_patient_from_checks_waiting_for_confirmation(
        site, keyring, manager, local_warehouse):
    gone, kept = keyring.pseudonym(LEAVING.nhs_number), keyring.pseudonym(STAYING.nhs_number)
    upload = preview_upload(site, "positive", "s.xlsx", _sheet(), manager)
    # listed, and its own clean-up (or the check's second look) never ran: a process killed
    Withdrawal.objects.create(pseudonym=gone, requested_by=manager.username, reason="objected")

    assert sweep() == [gone]

    upload.refresh_from_db()
    _holds_only(upload, kept, gone)
    event = AuditEvent.objects.get(action="withdrawal.sweep")
    assert (event.pseudonym, event.detail["checked_uploads"]) == (gone, 1)
    assert sweep() == []  # nothing left to find
