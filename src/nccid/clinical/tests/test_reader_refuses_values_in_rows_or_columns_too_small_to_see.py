"""A row of height 0 or a column of width 0 hides its values as hidden="1" does (Excel shows
neither; a <col> without a width is width 0 to Excel), yet python-calamine reads them: the
site would send what it cannot see. A row lower than 5 points or a column narrower than one
character shows no character either, so it is refused as hidden, in any spelling; a hidden or
narrow column holding only its header is still accepted."""

import pytest

from nccid.clinical import reader

from .helpers import positive_row, xlsx_bytes
from .test_reader_accepts_what_excel_writes_around_the_values import SHEET, edited, refused
from .test_reader_reads_elements_under_any_prefix import under

SECRET = b't="inlineStr"><is><t>Synthetic Secret</t></is></c>'


def sheet(extra_rows: bytes = b"", cols: bytes = b"") -> bytes:
    """A good positive sheet built by openpyxl, its XML edited: ``extra_rows`` after its data,
    ``cols`` before it."""
    headers, row = positive_row(age=40)
    return edited(xlsx_bytes(headers, [row]), {SHEET: lambda xml: xml.replace(
        b"</sheetData>", extra_rows + b"</sheetData>").replace(b"<sheetData", cols + b"<sheetData")})


@pytest.mark.parametrize("row", [
    b'<row r="3" ht="0" customHeight="1"><c r="A3" ' + SECRET + b"</row>",
    b'<row r="3" ht="0"><c r="A3" ' + SECRET + b"</row>",
    b"<row r='3' ht = ' 0.0 ' customHeight='true'><c r='A3' " + SECRET + b"</row>",
    b'<row r="3" ht="4.9" customHeight="1"><c r="A3" ' + SECRET + b"</row>",
    b'<row r="3" ht="5e-1"><c r="A3" ' + SECRET + b"</row>",
    b'<row r="3" ht="&#48;"><c r="A3" ' + SECRET + b"</row>",
    b'<row ht="0"><c ' + SECRET + b"</row>",  # placed after row 2
])
def test_a_row_too_low_to_see_holding_values_is_refused(row):
    assert reader.read_bytes(sheet()).rows  # the same sheet without the row is read
    assert "hidden rows holding values (3)" in refused(sheet(row)), row
    assert "hidden rows holding values (3)" in refused(edited(sheet(), {SHEET: under(b"x", row)}))


@pytest.mark.parametrize("cols", [
    b'<cols><col min="4" max="4" width="0" customWidth="1"/></cols>',
    b'<cols><col min="4" max="4" width="0"/></cols>',
    b"<cols><col min='2' max='5' width = '0.5' customWidth='1'/></cols>",
    b'<cols><col min="4" max="4" style="1"/></cols>',  # no width: 0 to Excel
])
def test_a_column_too_narrow_to_see_holding_values_is_refused(cols):
    message = refused(sheet(cols=cols))
    assert "hidden columns holding values (" in message and "D" in message, cols
    assert "narrower than 1 character counts as hidden" in message


def test_rows_and_columns_that_show_their_values_are_read():
    shown = sheet(b'<row r="3" ht="5" customHeight="1"><c r="A3" ' + SECRET + b"</row>"
                  b'<row r="4" ht="12.8" customHeight="false"><c r="A4" ' + SECRET + b"</row>",
                  b'<cols><col min="1" max="4" width="1" customWidth="1"/></cols>')
    assert [number for number, _ in reader.read_bytes(shown).rows] == [2, 3, 4]
    # Empty rows and columns of no size are fine, and so is a column holding only its header.
    empty = sheet(b'<row r="3" ht="0"/><row r="4" ht="0" customHeight="1"></row>',
                  b'<cols><col min="90" max="99" width="0"/></cols>')
    assert reader.read_bytes(empty).rows
    headers, row = positive_row()  # no age: column D holds its header only
    header_only = edited(xlsx_bytes(headers, [row]), {SHEET: lambda xml: xml.replace(
        b"<sheetData", b'<cols><col min="4" max="4" width="0"/></cols><sheetData')})
    assert reader.read_bytes(header_only).rows


def _titled(hidden: str, age=None) -> bytes:
    """A positive sheet with a title row above its headers and column ``hidden`` hidden."""
    headers, row = positive_row(age=age)  # column D: Age

    def title_and_hide(workbook):
        sheet = workbook.active
        sheet.insert_rows(1)
        sheet["A1"] = "Royal Test Hospital - COVID positive patients - April 2020"
        sheet.column_dimensions[hidden].hidden = True

    return xlsx_bytes(headers, [row], build=title_and_hide)


def test_a_title_row_is_named_not_a_hidden_column_holding_only_its_header():
    """The hidden check took the title as the header row, so the real header of a hidden
    column the site does not fill was a "value", and the title row went unmentioned."""
    with pytest.raises(reader.SpreadsheetRejected) as refused_:
        reader.layout(reader.read_bytes(_titled("D")), "positive")
    assert "was found in the first row" in str(refused_.value) and "hidden" not in str(refused_.value)


def test_a_hidden_column_holding_values_under_a_title_row_is_still_refused():
    assert "hidden columns holding values (D)" in refused(_titled("D", age=40))
