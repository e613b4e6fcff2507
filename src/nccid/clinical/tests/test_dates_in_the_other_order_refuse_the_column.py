"""A date column typed month first in a DD/MM site (or day first in an MM/DD site): the dates
impossible in the site's order were refused, and the others of the same column stored with
day and month swapped. Now, when most of a column's dates readable one way only can only be
read the other way, every date of that column that could be read either way is refused too;
a lone date in the other order is refused on its own."""

from nccid.clinical.schema import get_template

from .helpers import PEOPLE, positive_row, run, xlsx_bytes

HEADERS = get_template("positive").headers


def _admissions(dates: list[str], **site):
    rows = [positive_row(PEOPLE[i], date_of_admission=d, date_of_death="03/04/2020")[1]
            for i, d in enumerate(dates)]
    return run(xlsx_bytes(HEADERS, rows), **site)


def test_us_dates_in_a_dd_mm_site_are_refused_not_half_swapped():
    result = _admissions(["04/15/2020", "04/05/2020", "05/11/2020", "07/07/2020"])
    assert result.records and {r.rows[0] for r in result.records} == {5}  # 7 July: no question
    assert sorted(result.rejected_rows) == [2, 3, 4]
    reasons = {p.row: p.reason for p in result.problems}
    assert "there is no month 15" in reasons[2]
    assert reasons[3] == ("'04/05/2020' could be 4 May 2020 or 5 April 2020, and this column looks "
                          "like MM/DD/YYYY: row 2 can only be read that way. Use YYYY-MM-DD, or "
                          "correct the column to DD/MM/YYYY")


def test_other_date_columns_keep_the_sites_order():
    result = _admissions(["04/15/2020", "20/04/2020"])
    assert result.records[0].cleaned["date_of_death"] == "2020-04-03"  # 3 April, as DD/MM


def test_a_column_without_an_impossible_date_is_read_in_the_sites_order():
    result = _admissions(["04/05/2020", "13/05/2020"])
    assert sorted(r.cleaned["date_of_admission"] for r in result.records) == ["2020-05-04", "2020-05-13"]


def test_day_first_dates_in_an_mm_dd_site_are_refused_too():
    result = _admissions(["15/04/2020", "04/05/2020"], date_format="MDY")
    assert result.records == []
    assert "looks like DD/MM/YYYY: row 2" in {p.row: p.reason for p in result.problems}[3]


def test_one_date_in_the_other_order_is_refused_alone_when_the_column_is_the_sites_order():
    # A typo (12/13/2020) or one date typed US-style among dates that can only be DD/MM: the
    # column is DD/MM; only that cell is refused, and the dates readable either way are read
    # DD/MM (they had all been refused, the column said to "look like MM/DD").
    for odd in ("12/13/2020", "04/23/2020"):
        result = _admissions(["20/04/2020", "15/05/2020", odd, "04/05/2020", "07/06/2020"])
        assert sorted(result.rejected_rows) == [4]
        assert "it looks like the other day/month order" in result.problems[0].reason
        assert "looks like MM/DD" not in result.problems[0].reason
        admitted = {r.rows[0]: r.cleaned["date_of_admission"] for r in result.records}
        assert admitted[5] == "2020-05-04" and admitted[6] == "2020-06-07"


def test_the_column_is_refused_when_most_of_its_one_way_dates_are_the_other_order():
    result = _admissions(["04/15/2020", "05/20/2020", "25/05/2020", "04/05/2020"])
    assert 5 in result.rejected_rows  # 04/05 could be either: the column looks MM/DD
    assert "looks like MM/DD/YYYY: row 2" in {p.row: p.reason for p in result.problems}[5]
