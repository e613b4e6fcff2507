"""XML lets an attribute be written in single quotes, with spaces around "=", with a character
reference for a letter, and after other attributes whose values hold ">" or the other quote.
python-calamine reads such a sheet as any other, so the checks that refuse values it would read
unseen (hidden rows and columns, merged cells) read every spelling too, and so does the
placing of cells and the finding of error cells."""

from nccid.clinical import reader

from .helpers import positive_row
from .test_reader_accepts_what_excel_writes_around_the_values import (
    SHEET,
    edited,
    good_sheet,
    refused,
    with_shared_strings,
)

SECRET = b't="inlineStr"><is><t>Synthetic Secret</t></is></c>'


def with_sheet(rows: bytes = b"", after: bytes = b"") -> bytes:
    """The good sheet with ``rows`` added to its data and ``after`` written after the data."""
    return edited(good_sheet(), {SHEET: lambda xml: xml.replace(
        b"</sheetData>", rows + b"</sheetData>" + after)})


HIDDEN_ROWS = [b"<row r='3' hidden='1'><c r='A3' " + SECRET + b"</row>",
               b'<row r = "3" hidden = "true"><c r="A3" ' + SECRET + b"</row>",
               b'<row r="3" hidden="&#49;"><c r="A3" ' + SECRET + b"</row>",
               b'<row r="3" spans=">" hidden=" 1 "><c r="A3" ' + SECRET + b"</row>",
               b'<row hidden="1"><c ' + SECRET + b"</row>"]  # placed after row 2


def test_a_hidden_row_in_any_spelling_is_refused():
    for rows in HIDDEN_ROWS:
        assert "hidden rows holding values (3)" in refused(with_sheet(rows)), rows
    assert reader.read_bytes(with_sheet(b"<row r='3' hidden='0'><c r='A3' " + SECRET + b"</row>")).rows


HIDDEN_COLUMNS = [b"<cols><col min='4' max='4' hidden='1'/></cols>",
                  b'<cols><col min = "4" max = "4" hidden = "true" /></cols>',
                  b"<cols><col style='0' min='4' max='4' width='9' hidden='1'></col></cols>"]


def test_a_hidden_column_in_any_spelling_is_refused():
    for cols in HIDDEN_COLUMNS:
        data = edited(good_sheet(), {SHEET: lambda xml, cols=cols: xml.replace(b"<sheetData", cols + b"<sheetData")})
        assert "hidden columns holding values (D)" in refused(data), cols


def test_merged_cells_in_any_spelling_are_refused():
    rows = b'<row r="3"><c r="A3" t="inlineStr"><is><t>x</t></is></c><c r="B3" ' + SECRET + b"</row>"
    for merge in (b"<mergeCells count='1'><mergeCell ref='A3:B3'/></mergeCells>",
                  b'<mergeCells count="1"><mergeCell ref = "a3:b3" /></mergeCells>'):
        assert "merged cells" in refused(with_sheet(rows, merge)), merge


def test_a_reference_inside_another_attributes_value_is_not_the_cells():
    """The cell is at XFD3 (python-calamine reads its own r), not at A3."""
    rows = b"<row r=\"3\"><c x=\" r='A3'\" r=\"XFD3\"><v>1</v></c></row>"
    assert refused(with_sheet(rows)).startswith("the first sheet reaches beyond column CV")


def test_an_error_cell_in_any_spelling_is_a_cell_error():
    for cell in (b"<c r='D2' t='e'><v>#N/A</v></c>", b'<c r="D2" t = "e" ><v>#N/A</v></c>'):
        data = edited(good_sheet(), {SHEET: lambda xml, cell=cell: xml.replace(b'<c r="D2" t="n"><v>40</v></c>', cell)})
        assert reader.read_bytes(data).cell_errors == {2: {3: "#N/A"}}, cell


def test_template_headers_on_another_sheet_are_found_in_any_spelling():
    def second_batch(workbook):
        workbook.create_sheet("More").append(positive_row()[0])

    data = with_shared_strings(good_sheet(build=second_batch))
    data = edited(data, {"xl/worksheets/sheet2.xml": lambda xml: xml.replace(b' t="s"', b" t = 's'")})
    assert "sheet 2 (in order) also holds template columns" in refused(data)
