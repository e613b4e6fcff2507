"""Cells that once crashed validation or were misreported: each is an error or a reading for its
own cell, never an exception, an infinite number or a misleading message."""

import pytest

from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, one, run, sheet_of, template_row, xlsx_bytes

HUGE = "1" + "0" * 400


@pytest.mark.parametrize("typed", ["²", "１２３", "٣"])
def test_non_ascii_digits_in_a_date_column_are_a_cell_error(typed):
    [problem] = one("date_of_admission", typed)[1]
    assert (problem.severity, problem.row, problem.column) == ("error", 2, "Date of admission")
    assert "is not a date" in problem.reason


@pytest.mark.parametrize("field, typed", [
    ("crp", HUGE + " mg/L"), ("age", HUGE + " years"), ("heart_rate", HUGE + "/min"), ("crp", HUGE),
])
def test_a_number_too_large_for_a_float_is_a_cell_error(field, typed):
    result, problems = one(field, typed)
    [problem] = problems
    assert problem.severity == "error" and "is not a number" in problem.reason and result.records == []


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_huge_number_with_a_unit_does_not_stop_an_upload(site, make_user):
    user = make_user("uploader", site=site)
    data = sheet_of("positive", [{"crp": HUGE + " mg/L"}, {"crp": "12 mg/L"}])
    upload = services.confirm_upload(services.preview_upload(site, "positive", "a.xlsx", data, user), user)
    assert (upload.status, upload.accepted_rows, upload.rejected_rows) == ("accepted", 1, 1)
    assert ClinicalRecord.objects.get().cleaned["crp"] == 12


def test_age_takes_years_and_a_unitless_column_says_it_takes_a_plain_number():
    result, problems = one("age", "45 years")
    assert problems == [] and result.records[0].cleaned["age"] == 45
    [problem] = one("pack_year_history", "20 packs")[1]
    assert problem.reason == "'20 packs': this column takes a plain number, without a unit"


def test_a_thousands_separator_is_named_not_taken_for_a_unit():
    [problem] = one("platelet_count", "1,234")[1]
    assert "has a comma" in problem.reason and "unit" not in problem.reason


def test_a_true_false_cell_is_not_called_a_date():
    [problem] = one("heart_rate", True)[1]
    assert problem.reason == "is a TRUE/FALSE cell, not a number"


@pytest.mark.parametrize("field, kind", [("o2_saturation", "positive"), ("spo2", "isaric")])
def test_a_percent_formatted_saturation_cell_is_read_as_a_percentage(field, kind):
    template = get_template(kind)
    headers = template.headers
    column = headers.index(next(c.header for c in template.template_columns() if c.field == field))

    def percent(workbook):
        workbook.active.cell(row=2, column=column + 1).number_format = "0%"

    data = xlsx_bytes(headers, [template_row(template, PEOPLE[0], {field: 0.95})], build=percent)
    result = run(data, kind)
    assert result.problems == [] and result.records[0].cleaned[field] == 95


def test_an_explicit_percent_is_never_read_as_a_fraction():
    result, problems = one("fio2", "1%")
    [problem] = problems
    assert problem.severity == "warning" and "outside the plausible range 21 to 100" in problem.reason
    assert (result.records[0].data["fio2"], result.records[0].cleaned["fio2"]) == (1, None)
