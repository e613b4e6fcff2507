"""A spreadsheet checked but never confirmed keeps its rows and sealed numbers in the main
database; withdrawing a patient removes theirs from it, and leaves the other rows whole."""

from __future__ import annotations

import json

import pytest

from nccid.clinical.models import ClinicalRecord, Upload
from nccid.clinical.services import confirm_upload, preview_upload
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
