"""A birth date typed where a clinical date or a number belongs, and a name typed in a coded
column, never reach the main database: not in the upload's problems, its staged records, nor the
accepted records (data, cleaned, flags, versions)."""

import datetime as dt
import json

import pytest

from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord, ClinicalRecordVersion, Upload

from .helpers import PEOPLE, one, sheet_of

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _spellings(day: dt.date) -> list[str]:
    return [day.isoformat(), day.strftime("%d/%m/%Y"), day.strftime("%Y%m%d"), day.strftime("%-d %B %Y")]


def _stored_text() -> str:
    rows = [list(Upload.objects.values("errors", "sheet_warnings", "staged", "message")),
            list(ClinicalRecord.objects.values("data", "cleaned", "flags")),
            list(ClinicalRecordVersion.objects.values("data", "cleaned", "flags"))]
    return json.dumps(rows, default=str)


def test_planted_birth_dates_and_a_name_are_not_stored(site, make_user):
    user = make_user("uploader", site=site)
    births = [p.birth_date for p in PEOPLE[:4]]
    name = f"{PEOPLE[4].given_name} {PEOPLE[4].family_name}"
    rows = [
        {"age": dt.datetime.combine(births[0], dt.time())},  # a date cell under Age: rejected
        {"age": 50, "date_of_admission": births[1].isoformat()},  # before the study: dropped
        {"age": 50, "date_of_admission": births[2].strftime("%d/%m/%Y")},
        {"age": 50, "date_of_death": dt.datetime.combine(births[3], dt.time())},
        {"age": 50, "ethnicity": name},  # a name in a coded column: rejected, not shown
    ]
    upload = services.preview_upload(site, "positive", "sheet.xlsx", sheet_of("positive", rows), user)
    assert upload.status == "preview" and upload.rejected_rows == 2 and upload.accepted_rows == 3
    assert {e["row"] for e in upload.errors} == {2, 3, 4, 5, 6}
    before = _stored_text()
    services.confirm_upload(upload, user)
    assert ClinicalRecord.objects.count() == 3
    for stored in (before, _stored_text()):
        for day in births:
            for spelling in _spellings(day):
                assert spelling not in stored
        assert PEOPLE[4].given_name not in stored and PEOPLE[4].family_name not in stored


def test_a_date_before_the_study_is_a_hidden_warning_and_left_out_of_the_data():
    result, problems = one("date_of_admission", "1950-03-04")
    [problem] = problems
    assert (problem.severity, problem.value) == ("warning", "") and "1950" not in problem.reason
    assert "left out of the data" in problem.reason
    record = result.records[0]
    assert (record.data["date_of_admission"], record.cleaned["date_of_admission"]) == (None, None)
    assert record.flags == ["date_of_admission"]


@pytest.mark.parametrize("typed", [dt.datetime(1950, 3, 4), dt.date(1950, 3, 4), "1950-03-04", "04/03/1950",
                                   "2021-03-04"])
def test_a_date_in_a_number_or_coded_column_is_an_error_that_does_not_show_it(typed):
    for field in ("age", "crp", "ethnicity", "sex"):
        result, problems = one(field, typed)
        [problem] = problems
        assert (problem.severity, problem.value) == ("error", "")
        assert "is a date" in problem.reason and "03" not in problem.reason and result.records == []


@pytest.mark.parametrize("typed", ["31/02/1950", "30-02-1950", "1950-02-30", "04/03/1950 99:99"])
def test_an_invalid_early_date_is_not_shown(typed):
    [problem] = one("date_of_admission", typed)[1]
    assert problem.value == "" and "1950" not in problem.reason


def test_a_masked_warning_value_is_not_kept_in_the_data():
    result, problems = one("sex", "Not specified")
    [problem] = problems
    assert problem.value == "" and "nor kept" in problem.reason
    assert result.records[0].data["sex"] is None and result.records[0].cleaned["sex"] == "Unknown"
