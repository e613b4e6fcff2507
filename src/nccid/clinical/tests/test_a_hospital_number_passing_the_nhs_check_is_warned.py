"""A row's hospital number that passes the NHS/CHI check (1 in 14 ten-digit hospital numbers)
and is not the row's NHS/CHI number: the row is imported and linked, with a warning naming the
row and column, never the value, that images sent before with it may be another patient's."""

import pytest

from nccid.clinical import services
from nccid.clinical.models import PatientLink
from nccid.clinical.schema import get_template
from nccid.synthetic.people import nhs_test_numbers

from .helpers import PEOPLE, template_row, xlsx_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

PASSING = nhs_test_numbers(3, start=810_000)  # synthetic hospital numbers passing the check


def _sheet(rows: list[tuple]) -> bytes:
    template = get_template("positive")
    return xlsx_bytes(template.headers,
                      [template_row(template, person, dict(values)) for person, values in rows])


def _warnings(upload) -> list[dict]:
    return [e for e in upload.errors if e["severity"] == "warning"]


def test_a_hospital_number_passing_the_check_is_accepted_and_warned(site, make_user, keyring):
    user = make_user("uploader", site=site)
    spaced = f"{PASSING[1][:3]} {PASSING[1][3:6]} {PASSING[1][6:]}"
    data = _sheet([(PEOPLE[0], {"age": 50, "hospital_number": PASSING[0]}),
                   (PEOPLE[1], {"age": 51}),
                   (PEOPLE[2], {"age": 52, "hospital_number": spaced}),
                   (PEOPLE[3], {"age": 53, "hospital_number": int(PASSING[2])})])

    upload = services.preview_upload(site, "positive", "a.xlsx", data, user)

    assert (upload.accepted_rows, upload.rejected_rows) == (4, 0)
    warned = [w for w in _warnings(upload) if "passes the NHS/CHI number check" in w["reason"]]
    assert [(w["row"], w["column"], w["value"]) for w in warned] == [
        (2, "Hospital (Internal) Number", ""), (4, "Hospital (Internal) Number", ""),
        (5, "Hospital (Internal) Number", "")]
    assert "a data manager can move them" in warned[0]["reason"]
    assert not any(n in str(upload.errors) for n in PASSING)  # never the value
    services.confirm_upload(upload, user)
    assert PatientLink.objects.get(
        hospital_hash=keyring.hospital_hash(site.code, PASSING[0])
    ).pseudonym == keyring.pseudonym(PEOPLE[0].nhs_number)


def test_a_hospital_number_that_is_the_rows_own_nhs_number_is_not_warned(site, make_user):
    user = make_user("uploader", site=site)
    data = _sheet([(PEOPLE[4], {"age": 50, "hospital_number": PEOPLE[4].nhs_number})])

    upload = services.preview_upload(site, "positive", "a.xlsx", data, user)

    assert upload.accepted_rows == 1
    assert not [w for w in _warnings(upload) if "passes the NHS/CHI" in w["reason"]]
