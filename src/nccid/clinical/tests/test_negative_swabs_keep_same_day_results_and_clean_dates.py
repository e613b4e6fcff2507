"""Negative sheet: two swabs of one day with different results are both kept (a positive is never
lost), and a swab date left out of the cleaned data is never the latest swab."""

import datetime as dt

from nccid.clinical.validation import clean_negative, merge_swab_lists

from .helpers import PEOPLE, run, sheet_of


def test_two_results_on_one_day_are_both_kept_with_a_warning():
    person = PEOPLE[0]
    rows = [{"swab_date": "2021-02-01", "swab_status": "POSITIVE"},
            {"swab_date": "01/02/2021", "swab_status": "Negative"}]
    result = run(sheet_of("negative", rows, [person, person]), "negative")
    [record] = result.records
    assert record.data["swabs"] == [{"date": "2021-02-01", "status": "0"}, {"date": "2021-02-01", "status": "1"}]
    assert record.cleaned["any_positive_swab"] is True
    assert (record.cleaned["latest_swab_date"], record.cleaned["latest_swab_status"]) == ("2021-02-01", "Positive")
    [warning] = result.problems
    assert (warning.severity, warning.row) == ("warning", 3) and "row 2" in warning.reason


def test_a_repeated_row_adds_no_swab():
    person = PEOPLE[0]
    rows = [{"swab_date": "2021-02-01", "swab_status": 1}, {"swab_date": "2021-02-01", "swab_status": 1}]
    result = run(sheet_of("negative", rows, [person, person]), "negative")
    assert result.problems == [] and result.records[0].data["swabs"] == [{"date": "2021-02-01", "status": "1"}]


def test_a_flagged_future_date_is_not_the_latest_swab():
    person = PEOPLE[0]
    future = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    rows = [{"swab_date": "2021-01-06", "swab_status": 0}, {"swab_date": future, "swab_status": 1}]
    result = run(sheet_of("negative", rows, [person, person]), "negative")
    [record] = result.records
    assert [p.severity for p in result.problems] == ["warning"]
    assert record.data["swabs"][-1]["date"] == future  # kept as typed in the raw data
    assert [s["date"] for s in record.cleaned["swabs"]] == ["2021-01-06", None]
    assert (record.cleaned["latest_swab_date"], record.cleaned["latest_swab_status"]) == ("2021-01-06", "Negative")
    assert record.cleaned["any_positive_swab"] is True  # the status still counts


def test_a_later_upload_corrects_its_dates_and_keeps_the_others():
    old = [{"date": "2021-02-01", "status": "1"}, {"date": "2021-02-01", "status": "0"},
           {"date": "2021-03-01", "status": "0"}]
    new = [{"date": "2021-02-01", "status": "0"}]
    merged = merge_swab_lists(old, new)
    assert merged == [{"date": "2021-02-01", "status": "0"}, {"date": "2021-03-01", "status": "0"}]
    assert clean_negative({"swabs": merged})["any_positive_swab"] is False
