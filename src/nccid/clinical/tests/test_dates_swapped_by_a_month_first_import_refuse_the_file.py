"""A UK CSV opened in a US-locale Excel or LibreOffice and saved as xlsx: each day-first date
that is also a valid month-first date became a date cell with day and month swapped
(05/01/2021 the date 1 May 2021), and each that is not (13/04/2020) stayed text. The text was
read day first, rightly, and the date cells stored swapped without a word. A date column
holding both, with text dates only day first and date cells only on days 1 to 12, now
refuses the file, naming the column and how to fix it, never a value."""

import datetime as dt

import pytest

from nccid.clinical.reader import SpreadsheetRejected
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, positive_row, run, xlsx_bytes

HEADERS = get_template("positive").headers
LETTER = "Y"  # Date of admission


def _admissions(dates: list, **site):
    rows = [positive_row(PEOPLE[i], date_of_admission=d)[1] for i, d in enumerate(dates)]
    return run(xlsx_bytes(HEADERS, rows), **site)


SWAPPED = [dt.datetime(2021, 5, 1), "13/04/2020", dt.datetime(2020, 6, 3), "25/05/2020 10:15"]


@pytest.mark.parametrize("date_format", ["DMY", ""])
def test_date_cells_beside_day_first_text_dates_refuse_the_file(date_format):
    assert HEADERS[ord(LETTER) - ord("A")] == "Date of admission"  # the template's column Y
    with pytest.raises(SpreadsheetRejected) as refused:
        _admissions(SWAPPED, date_format=date_format)
    message = str(refused.value)
    assert f"column {LETTER} ('Date of admission')" in message
    assert "month-first (US)" in message and "UK date settings" in message
    assert not any(shown in message for shown in ("2021", "2020", "13/04", "25/05"))


def test_date_cells_with_a_day_after_12_are_no_swap():
    # A UK workbook of date cells with one date pasted as text: read as it is.
    result = _admissions([dt.datetime(2020, 5, 21), "13/04/2020", dt.datetime(2020, 6, 3)], date_format="DMY")
    assert sorted(r.cleaned["date_of_admission"] for r in result.records) == [
        "2020-04-13", "2020-05-21", "2020-06-03"]


def test_a_text_date_a_month_first_import_would_have_made_a_cell_is_no_swap():
    result = _admissions([dt.datetime(2020, 5, 1), "13/04/2020", "05/06/2020"], date_format="DMY")
    assert len(result.records) == 3


@pytest.mark.parametrize("dates", [
    [dt.datetime(2020, 5, 1), dt.datetime(2020, 6, 3)],  # date cells alone
    ["13/04/2020", "05/06/2020"],  # text alone
])
def test_a_column_of_one_kind_is_read(dates):
    assert len(_admissions(dates, date_format="DMY").records) == 2


def test_a_month_first_site_is_not_checked():
    # There a day-first text date is refused on its own row; the date cells are read.
    result = _admissions(SWAPPED, date_format="MDY")
    assert sorted(result.rejected_rows) == [3, 5]


def test_a_text_date_valid_month_first_only_is_no_swap():
    # 05/13/2020 would have become a date cell too: this column was not so imported.
    result = _admissions([dt.datetime(2020, 5, 1), "13/04/2020", "05/13/2020"], date_format="DMY")
    assert sorted(result.rejected_rows) == [4]
