"""A spreadsheet checked but never confirmed keeps its rows and sealed numbers in the main
database; withdrawing a patient removes theirs from it, and leaves the other rows whole."""

from __future__ import annotations

import json

import pytest

from nccid.clinical.models import ClinicalRecord, Upload
from nccid.clinical.services import WITHDRAWN_ROW, confirm_upload, preview_upload
from nccid.clinical.tests.helpers import sheet_of
from nccid.withdrawal.models import Withdrawal
from nccid.withdrawal.services import withdraw

from .conftest import PEOPLE

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_a_withdrawal_removes_the_patient_from_uploads_waiting_for_confirmation(
        site, keyring, manager, local_warehouse):
    leaving, staying = PEOPLE[4], PEOPLE[5]
    gone, kept = keyring.pseudonym(leaving.nhs_number), keyring.pseudonym(staying.nhs_number)
    upload = preview_upload(site, "positive", "s.xlsx",
                            sheet_of("positive", [{"age": 40}, {"age": 60}], [leaving, staying]), manager)
    assert upload.status == "preview" and gone in json.dumps(Upload.objects.get(pk=upload.pk).staged)

    withdraw(manager, gone, "Asked to leave the study")

    staged = Upload.objects.get(pk=upload.pk).staged
    assert gone not in json.dumps(staged) and kept in json.dumps(staged)
    assert [r["pseudonym"] for r in staged["records"]] == [kept]
    assert Withdrawal.objects.get(pseudonym=gone).removed["checked_uploads"] == 1
    confirm_upload(Upload.objects.get(pk=upload.pk), manager)
    assert list(ClinicalRecord.objects.values_list("pseudonym", flat=True)) == [kept]


def _withdrawn_rows(upload: Upload) -> list[int]:
    return [e["row"] for e in upload.errors if e["reason"] == WITHDRAWN_ROW]


def _checked(site, keyring, manager):
    """A checked sheet of two patients (rows 2 and 3); the first one's pseudonym."""
    upload = preview_upload(site, "positive", "s.xlsx", sheet_of(
        "positive", [{"age": 40}, {"age": 60}], [PEOPLE[4], PEOPLE[5]]), manager)
    assert (upload.status, upload.accepted_rows, upload.rejected_rows) == ("preview", 2, 0)
    return upload, keyring.pseudonym(PEOPLE[4].nhs_number)


def test_rows_of_a_patient_withdrawn_after_the_check_count_as_refused(
        site, keyring, manager, local_warehouse):
    upload, gone = _checked(site, keyring, manager)

    withdraw(manager, gone, "Asked to leave the study", refresh=False)

    checked = Upload.objects.get(pk=upload.pk)
    assert (checked.accepted_rows, checked.rejected_rows, checked.new_records) == (1, 1, 1)
    assert _withdrawn_rows(checked) == [2]
    done = confirm_upload(upload, manager)  # the caller's copy, as it was checked
    assert (done.status, done.accepted_rows, done.rejected_rows, done.new_records) == ("accepted", 1, 1, 1)
    assert _withdrawn_rows(Upload.objects.get(pk=upload.pk)) == [2]  # counted once


def test_a_patient_listed_while_the_confirmation_runs_is_counted_refused(
        site, keyring, manager, local_warehouse):
    upload, gone = _checked(site, keyring, manager)
    # the withdrawal's first step (the list) is done; its removals have not run yet
    Withdrawal.objects.create(pseudonym=gone, requested_by=manager.username, reason="objected")

    done = confirm_upload(upload, manager)

    assert (done.accepted_rows, done.rejected_rows, done.new_records) == (1, 1, 1)
    assert _withdrawn_rows(Upload.objects.get(pk=upload.pk)) == [2]
    assert not ClinicalRecord.objects.filter(pseudonym=gone).exists()
