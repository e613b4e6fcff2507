"""An XML name prefix may hold letters, digits, "-", "." and "_" (and letters beyond ASCII):
python-calamine reads elements by their local name whatever the prefix, so the checks of the
sheet find formulas, hidden rows, error cells and far cells under any prefix."""

import re

from nccid.clinical import reader

from .test_reader_accepts_what_excel_writes_around_the_values import (
    SHEET,
    edited,
    good_sheet,
    refused,
)

MAIN = b"http://schemas.openxmlformats.org/spreadsheetml/2006/main"
PREFIXES = [b"a-b", b"x.y", b"_s1", "é".encode()]


def under(prefix: bytes, extra: bytes = b""):
    """The sheet's elements written under ``prefix``, ``extra`` rows added to its data."""
    def edit(xml: bytes) -> bytes:
        xml = xml.replace(b"</sheetData>", extra + b"</sheetData>")
        xml = re.sub(rb"<(/?)(\w+)(?=[\s/>])", rb"<\1" + prefix + rb":\2", xml)
        return xml.replace(b' xmlns="', b" xmlns:" + prefix + b'="', 1)
    return edit


def test_a_formula_under_any_prefix_is_refused():
    for prefix in PREFIXES:
        cell = b'<c r="D2" xmlns:' + prefix + b'="' + MAIN + b'"><' + prefix + b":f>40+1</" + prefix + b":f><v>41</v></c>"
        data = edited(good_sheet(), {SHEET: lambda xml, cell=cell: xml.replace(b'<c r="D2" t="n"><v>40</v></c>', cell)})
        assert "contains formulas" in refused(data), prefix
        assert "contains formulas" in refused(edited(data, {SHEET: under(prefix)})), prefix


def test_the_checks_of_a_sheet_under_any_prefix():
    hidden = b'<row r="3" hidden="1"><c r="A3" t="inlineStr"><is><t>Synthetic Secret</t></is></c></row>'
    far = b"<row><c t=\"inlineStr\"><is><t>x</t></is></c></row>" * 50_000
    error = b'<row r="3"><c r="D3" t="e"><v>#N/A</v></c></row>'
    for prefix in PREFIXES:
        assert reader.read_bytes(edited(good_sheet(), {SHEET: under(prefix)})).rows, prefix
        assert "hidden rows holding values (3)" in refused(edited(good_sheet(), {SHEET: under(prefix, hidden)}))
        assert refused(edited(good_sheet(), {SHEET: under(prefix, far)})).startswith(
            "the first sheet reaches beyond column CV or has more than 49,999 rows"), prefix
        sheet = reader.read_bytes(edited(good_sheet(), {SHEET: under(prefix, error)}))
        assert sheet.cell_errors == {3: {3: "#N/A"}}, prefix
