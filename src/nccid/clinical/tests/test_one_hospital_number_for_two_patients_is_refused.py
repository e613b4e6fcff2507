"""One hospital number given to two different NHS/CHI numbers in one sheet refuses those rows:
images carrying that number would otherwise be linked to whichever patient came first."""

import pytest

from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord, PatientLink
from nccid.clinical.schema import get_template
from nccid.identity.models import VaultEntry

from .helpers import PEOPLE, template_row, xlsx_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def sheet(rows: list[tuple]) -> bytes:
    template = get_template("positive")
    return xlsx_bytes(template.headers, [template_row(template, person, dict(values)) for person, values in rows])


def test_two_patients_with_one_hospital_number_are_both_refused(site, make_user, keyring):
    user = make_user("uploader", site=site)
    shared = "RX12345"
    data = sheet([(PEOPLE[0], {"age": 50, "hospital_number": shared}),
                  (PEOPLE[2], {"age": 55}),
                  (PEOPLE[1], {"age": 60, "hospital_number": shared})])
    upload = services.preview_upload(site, "positive", "a.xlsx", data, user)
    assert (upload.accepted_rows, upload.rejected_rows, upload.new_records) == (1, 2, 1)
    errors = [e for e in upload.errors if e["severity"] == "error"]
    assert [(e["row"], e["column"]) for e in errors] == [(2, "Hospital (Internal) Number"),
                                                          (4, "Hospital (Internal) Number")]
    assert "different NHS/CHI number in row 4" in errors[0]["reason"]
    assert "different NHS/CHI number in row 2" in errors[1]["reason"]
    assert all(shared not in str(e) for e in upload.errors)  # the number is never repeated
    services.confirm_upload(upload, user)
    assert list(ClinicalRecord.objects.values_list("pseudonym", flat=True)) == [
        keyring.pseudonym(PEOPLE[2].nhs_number)]
    assert list(PatientLink.objects.values_list("pseudonym", flat=True)) == [
        keyring.pseudonym(PEOPLE[2].nhs_number)]
    assert VaultEntry.objects.count() == 1  # nothing of the refused patients is kept


def test_one_patient_repeating_a_hospital_number_is_not_a_conflict(site, make_user):
    """On the negative template a patient has a row per swab, each with the hospital number."""
    user = make_user("uploader", site=site)
    template = get_template("negative")
    rows = [template_row(template, PEOPLE[0], {"swab_date": "2020-04-0" + str(day), "swab_status": 0})
            for day in (1, 2)]
    upload = services.preview_upload(site, "negative", "a.xlsx", xlsx_bytes(template.headers, rows), user)
    assert upload.status == "preview" and upload.rejected_rows == 0 and upload.new_records == 1
