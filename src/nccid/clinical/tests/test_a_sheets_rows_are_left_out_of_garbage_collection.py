"""A sheet's rows hold only values (text, numbers, dates), so the garbage collector has nothing
to find in them; as lists of 20,000 rows they were walked again by every full collection while
the sheet was checked and written (a tenth of a second of the bench's import). Rows are
tuples: once seen holding only values, the collector stops tracking them."""

import datetime as dt
import gc

from nccid.clinical import reader

from .helpers import csv_bytes, positive_row, xlsx_bytes


def test_the_rows_of_an_xlsx_and_of_a_csv_are_untracked_after_a_collection():
    headers, row = positive_row(age=50, date_of_admission=dt.datetime(2020, 7, 13), hospital="Ward 12")
    for data in (xlsx_bytes(headers, [row, row]), csv_bytes(headers, [row, row])):
        sheet = reader.read_bytes(data)
        # A tuple is untracked once what it holds is: the row's values at one collection, the
        # (row number, values) pair holding them by the next at the latest.
        gc.collect()
        gc.collect()
        assert len(sheet.rows) == 2
        assert not any(gc.is_tracked(entry) or gc.is_tracked(entry[1]) for entry in sheet.rows)
