"""A free-text cell (the Hospital column) keeps what the site typed, and that reaches the
warehouse and researchers with the record: a hospital number there is refused, whichever
patient's it is. Refused are any hospital number of the same upload (any row's), a word with the
pattern of letters and digits of the upload's hospital numbers, and a hospital number a patient
of the site is already linked by (compared as keyed hashes). Messages name the row and column,
never the number; a value a message would show is hidden the same way."""

import json

import pytest

from nccid.clinical import services
from nccid.clinical.hospital_numbers import (
    A_SITE_PATIENTS_NUMBER,
    ANOTHER_ROWS_NUMBER,
    SHAPED_LIKE_A_NUMBER,
)
from nccid.clinical.models import Upload
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, run, template_row, xlsx_bytes

TEMPLATE = get_template("positive")


def sheet(*rows: tuple) -> bytes:
    """A positive sheet of (person, {field: value}) rows."""
    return xlsx_bytes(TEMPLATE.headers, [template_row(TEMPLATE, person, dict(values))
                                         for person, values in rows])


def spaced_lower(number: str) -> str:
    return f"{number[:4]} {number[4:]}".lower()


@pytest.mark.parametrize("typed", ["{number}", "seen at {number} clinic", "{spaced_lower}"])
def test_another_rows_hospital_number_in_a_text_cell_refuses_the_row_unshown(typed):
    holder, other = PEOPLE[10], PEOPLE[11]
    number = other.hospital_number
    hospital = typed.format(number=number, spaced_lower=spaced_lower(number))
    result = run(sheet((holder, {"hospital": hospital, "age": 50}), (other, {"age": 60})))
    [problem] = result.problems
    assert (problem.row, problem.column, problem.value) == (2, "Hospital", "")
    assert problem.reason == ANOTHER_ROWS_NUMBER.format(row=3)
    assert result.rejected_rows == {2} and [r.rows for r in result.records] == [[3]]
    assert number not in repr([p.as_dict() for p in result.problems] + [r.data for r in result.records])


def test_another_rows_hospital_number_in_a_coded_or_number_cell_is_not_shown():
    holder, other = PEOPLE[12], PEOPLE[13]
    result = run(sheet((holder, {"age": other.hospital_number}),
                       (other, {"age": 60, "smoking_status": other.hospital_number})))
    assert [(p.row, p.column, p.value, p.reason) for p in result.problems] == [
        (2, "Age", "", ANOTHER_ROWS_NUMBER.format(row=3)),
        (3, "Smoking status (Never = 0, Ex-smoker = 1, Current = 2, Unknown = 3)", "",
         "holds the row's hospital number: identifiers belong only in their own columns, so this "
         "row was not imported")]
    assert result.records == []


def test_a_word_with_the_pattern_of_the_sheets_hospital_numbers_is_refused_in_text():
    absent = PEOPLE[30]  # not in the sheet, nor known anywhere: recognised by its form
    result = run(sheet((PEOPLE[14], {"hospital": f"{absent.given_name} {absent.hospital_number}"}),
                       (PEOPLE[15], {"hospital": "RX101 Royal Example, Ward 12"})))
    [problem] = result.problems
    assert (problem.row, problem.value, problem.reason) == (2, "", SHAPED_LIKE_A_NUMBER)
    [record] = result.records
    assert record.data["hospital"] == "RX101 Royal Example, Ward 12"  # a site code is not one


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_hospital_number_the_site_already_links_is_refused_in_text(site, make_user):
    user = make_user("uploader", site=site)
    known = PEOPLE[16]
    first = services.preview_upload(site, "positive", "first.xlsx", sheet((known, {"age": 50})), user)
    services.confirm_upload(first, user)
    # No hospital numbers in this sheet: only the site's links can recognise the number.
    later = sheet((PEOPLE[17], {"hospital_number": None, "hospital": f"see {known.hospital_number}."}),
                  (PEOPLE[18], {"hospital_number": None, "age": known.hospital_number}),
                  (PEOPLE[19], {"hospital_number": None, "hospital": "Royal Example 2", "age": 40}))
    upload = services.preview_upload(site, "positive", "later.xlsx", later, user)
    assert upload.status == "preview"
    assert [(e["row"], e["column"], e["value"], e["reason"]) for e in upload.errors] == [
        (2, "Hospital", "", A_SITE_PATIENTS_NUMBER), (3, "Age", "", A_SITE_PATIENTS_NUMBER)]
    assert [r["rows"] for r in upload.staged["records"]] == [[4]]
    assert list(upload.staged["vault_sealed"]) == [r["pseudonym"] for r in upload.staged["records"]]
    stored = json.dumps(list(Upload.objects.values("errors", "sheet_warnings", "staged", "message")))
    assert known.hospital_number not in stored
