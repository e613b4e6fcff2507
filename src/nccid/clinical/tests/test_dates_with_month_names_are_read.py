"""A date column reads a month by name as well as by number: Excel's own CSV export of a
d-mmm-yy cell writes 13-Jul-20, and sites type 13 July 2020. Year first is year, month, day
with any separator; a time and time zone after a date are ignored, the date kept as written.
A two-digit year is read as in 13/07/20 (2000 onwards, unless that is after this year:
13/07/31 is 1931 and, as every date before the study, is not shown). What is impossible or says two
things (31 Feb, a weekday the date is not) is still refused. Every spelling read here is one
the guard refuses where no date belongs, so a birth date typed so elsewhere is not kept."""

import pytest

from nccid.identity.reasons import date_pattern

from .helpers import one

READ_AS_13_JULY_2020 = [
    "13 Jul 2020", "13-Jul-20", "13-Jul-2020", "13 July 2020", "Monday 13 July 2020", "Mon, 13 Jul 2020",
    "13th July 2020", "13th of July 2020", "13JUL2020", "13 jul. 2020", "July 13, 2020", "2020-Jul-13",
    "13 Jul 2020 14:30", "2020/07/13", "2020.07.13", "2020-07-13T23:30:00Z", "2020-07-13T23:30:00-05:00",
    "2020-07-13 00:30:00+01:00", "2020-07-13T23:30:00.250Z",
]


@pytest.mark.parametrize("typed", READ_AS_13_JULY_2020)
@pytest.mark.parametrize("date_format", ["DMY", "MDY", ""])
def test_a_date_spelt_with_its_month_or_year_first_is_read(typed, date_format):
    result, problems = one("date_of_admission", typed, date_format=date_format)
    assert problems == []
    assert result.records[0].cleaned["date_of_admission"] == "2020-07-13"


def test_a_two_digit_year_reads_as_in_a_slash_date():
    spelt, slashed = one("date_of_admission", "5-Mar-21")[0], one("date_of_admission", "05/03/21")[0]
    assert spelt.records[0].cleaned["date_of_admission"] == "2021-03-05"
    assert slashed.records[0].cleaned["date_of_admission"] == "2021-03-05"


@pytest.mark.parametrize("typed", ["13/07/31", "13-Jul-31", "13 July 31"])
def test_a_two_digit_year_after_this_one_is_last_century_and_not_shown(typed):
    """Read as 2031, a birth date typed with a two-digit year was kept and shown as after today."""
    result, problems = one("date_of_admission", typed)
    [problem] = problems
    assert problem.value == "" and "31" not in problem.reason and "before" in problem.reason
    assert result.records[0].cleaned["date_of_admission"] is None


@pytest.mark.parametrize("typed, why", [
    ("31 Feb 2020", "February has no day 31"), ("29-Feb-21", "February has no day 29"),
    ("Tuesday 13 July 2020", "13 July 2020 is a Monday"), ("13 Jly 2020", "is not a date"),
    ("Funday 13 July 2020", "is not a date"), ("Jul 2020", "is not a date"), ("July 13 20", "is not a date"),
    ("2020/13/07", "is not a valid date"), ("2020-07/13", "is not a date"),
])
def test_an_impossible_or_self_contradicting_date_is_refused(typed, why):
    result, problems = one("date_of_admission", typed)
    [problem] = problems
    assert problem.severity == "error" and why in problem.reason and result.records == []


def test_an_impossible_early_date_with_a_month_name_is_not_shown():
    [problem] = one("date_of_admission", "31 Feb 1950")[1]
    assert (problem.severity, problem.value) == ("error", "") and "1950" not in problem.reason


@pytest.mark.parametrize("typed", READ_AS_13_JULY_2020)
def test_every_spelling_read_is_refused_where_no_date_belongs(typed):
    born = typed.replace("2020", "1931").replace("-20", "-31")
    assert date_pattern().search(born), born
    [problem] = one("hospital", born)[1]
    assert (problem.severity, problem.value) == ("error", "") and "is a date" in problem.reason


# Excel's and LibreOffice's CSV export of a cell formatted dd/mm/yyyy h:mm AM/PM
WITH_A_12_HOUR_TIME = ["13/07/2020 9:30 AM", "13/07/2020 9:30 PM", "13/07/2020 09:30:00 pm", "13/07/2020 9:30a.m.",
                       "13 Jul 2020 9:30 PM", "2020-07-13 9:30 PM"]


@pytest.mark.parametrize("typed", WITH_A_12_HOUR_TIME)
@pytest.mark.parametrize("date_format", ["DMY", ""])
def test_a_date_with_a_12_hour_time_is_read_and_the_time_ignored(typed, date_format):
    result, problems = one("date_of_admission", typed, date_format=date_format)
    assert problems == []
    assert result.records[0].cleaned["date_of_admission"] == "2020-07-13"


@pytest.mark.parametrize("typed", WITH_A_12_HOUR_TIME)
def test_a_date_with_a_12_hour_time_is_refused_where_no_date_belongs(typed):
    [problem] = one("hospital", typed.replace("2020", "1931"))[1]
    assert (problem.severity, problem.value) == ("error", "") and "is a date" in problem.reason
