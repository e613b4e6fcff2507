"""Cells as sites type them: a date typed as a number in a workbook of the 1904 date system,
"6_5" (which Python's float() reads as 65), a code list's own labels ("Never", "Death"), and a
temperature in "38.5 C"."""

import datetime as dt

import pytest
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from nccid.clinical import reader
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, one, positive_row, run, template_row, xlsx_bytes


def _mac_1904(workbook):
    workbook.epoch = CALENDAR_MAC_1904


def test_a_day_number_in_a_1904_workbook_counts_from_1904():
    typed = (dt.date(2021, 1, 10) - dt.date(1904, 1, 1)).days  # what such a workbook holds
    headers, row = positive_row(PEOPLE[0], date_of_admission=typed,
                                date_of_death=dt.datetime(2021, 2, 1, 23, 59))
    data = xlsx_bytes(headers, [row], build=_mac_1904)
    assert reader.read_bytes(data).date1904
    cleaned = run(data).records[0].cleaned
    assert (cleaned["date_of_admission"], cleaned["date_of_death"]) == ("2021-01-10", "2021-02-01")


def test_a_day_number_in_an_ordinary_workbook_counts_from_1900():
    typed = (dt.date(2021, 1, 10) - dt.date(1899, 12, 30)).days
    headers, row = positive_row(PEOPLE[0], date_of_admission=typed)
    assert run(xlsx_bytes(headers, [row])).records[0].cleaned["date_of_admission"] == "2021-01-10"


@pytest.mark.parametrize("typed", ["6_5", "1_2_0"])
def test_an_underscore_in_a_number_is_not_a_number(typed):
    result, problems = one("age", typed)
    assert result.records == [] and [p.reason for p in problems] == [f"'{typed}' is not a number"]


@pytest.mark.parametrize("field, typed, label", [
    ("smoking_status", "Never", "Never"), ("smoking_status", "ex-smoker", "Ex-smoker"),
    ("cxr_severity", "Moderate", "Moderate"), ("pmh_cvs_disease", "Angina", "Angina"),
])
def test_a_code_lists_labels_are_accepted(field, typed, label):
    result, problems = one(field, typed)
    assert problems == [] and result.records[0].cleaned[field] == label


def test_isaric_outcome_death_is_accepted():
    template = get_template("isaric")
    row = template_row(template, PEOPLE[0], {"outcome": "Death"})
    result = run(xlsx_bytes(template.headers, [row]), "isaric")
    assert result.records[0].data["outcome"] == "2" and result.records[0].cleaned["outcome"] == "Death"


@pytest.mark.parametrize("typed", ["38.5 C", "38.5C", "38.5 °C", "38.5 degC", "101.3 F"])
def test_a_temperature_may_name_celsius_or_fahrenheit(typed):
    result, problems = one("temperature", typed)
    assert problems == [] and result.records[0].cleaned["temperature"] == pytest.approx(38.5, abs=0.01)
