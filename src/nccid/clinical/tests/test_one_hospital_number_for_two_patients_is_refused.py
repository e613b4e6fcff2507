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


def _negative(rows: list[tuple]) -> bytes:
    template = get_template("negative")
    return xlsx_bytes(template.headers, [
        template_row(template, person, {"hospital_number": number, "swab_date": day, "swab_status": status})
        for person, number, day, status in rows])


def test_a_patients_second_hospital_number_is_linked_too_and_warned(site, make_user, keyring):
    """A negative sheet's patient with two hospital numbers (two of the trust's hospitals):
    images carrying the second one must link to the patient as well."""
    user = make_user("uploader", site=site)
    upload = services.preview_upload(site, "negative", "a.xlsx", _negative([
        (PEOPLE[0], "RX11111", "2020-04-01", 0), (PEOPLE[0], "RX22222", "2020-04-02", 0)]), user)
    assert (upload.accepted_rows, upload.rejected_rows) == (2, 0)
    assert [(e["row"], e["severity"], e["reason"]) for e in upload.errors] == [
        (3, "warning", "the same patient has a different hospital number in row 2: both are linked "
                       "to the patient (check the sheet if that is not right)")]
    services.confirm_upload(upload, user)
    pseudonym = keyring.pseudonym(PEOPLE[0].nhs_number)
    assert dict(PatientLink.objects.values_list("hospital_hash", "pseudonym")) == {
        keyring.hospital_hash(site.code, "RX11111"): pseudonym,
        keyring.hospital_hash(site.code, "RX22222"): pseudonym}


def test_a_patients_second_hospital_number_given_to_another_patient_is_refused(site, make_user):
    user = make_user("uploader", site=site)
    upload = services.preview_upload(site, "negative", "a.xlsx", _negative([
        (PEOPLE[0], "RX11111", "2020-04-01", 0), (PEOPLE[0], "RX22222", "2020-04-02", 0),
        (PEOPLE[1], "RX22222", "2020-04-02", 1), (PEOPLE[2], "RX33333", "2020-04-03", 0)]), user)
    assert (upload.accepted_rows, upload.rejected_rows, upload.new_records) == (1, 3, 1)
    errors = {e["row"]: e["reason"] for e in upload.errors if e["severity"] == "error"}
    assert "different NHS/CHI number in row 4" in errors[3] and "in row 3" in errors[4]
    assert errors[2] == ("not imported: another row of this patient (row 3) gives a hospital number "
                         "that a different NHS/CHI number has")
    assert all("RX" not in str(e) for e in upload.errors)  # no number is repeated
    services.confirm_upload(upload, user)
    assert ClinicalRecord.objects.count() == 1 and PatientLink.objects.count() == 1
