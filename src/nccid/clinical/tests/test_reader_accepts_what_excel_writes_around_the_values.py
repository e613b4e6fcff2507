"""What Excel writes around a sheet's values does not refuse it: a drop-down list whose source is
another sheet, a Strict Open XML workbook, formatting far below the data, a hidden column holding
only its header. The checks still refuse what they guard against in the same files."""

import io
import re
import zipfile

import pytest
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from nccid.clinical import reader
from nccid.clinical.reader import SpreadsheetRejected

from .helpers import positive_row, xlsx_bytes

SHEET = "xl/worksheets/sheet1.xml"


def good_sheet(build=None) -> bytes:
    headers, row = positive_row(age=40)
    return xlsx_bytes(headers, [row], build=build)


def refused(data: bytes) -> str:
    with pytest.raises(SpreadsheetRejected) as caught:
        reader.layout(reader.read_bytes(data), "positive")
    return str(caught.value)


def edited(data: bytes, edits: dict) -> bytes:
    """The xlsx with each part named in ``edits`` passed through its function (bytes -> bytes);
    a part it lacks is added, made from b""."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in dict.fromkeys(source.namelist() + list(edits)):
            part = source.read(name) if name in source.namelist() else b""
            archive.writestr(name, edits.get(name, lambda x: x)(part))
    return out.getvalue()


def before_end(text: bytes):
    return lambda xml: xml.replace(b"</worksheet>", text + b"</worksheet>")


# Excel's drop-down list whose source is another sheet, and a conditional format of its 2010
# kind: both keep their formula (an xm:f) in the sheet's extension list, not in a cell.
X14_LIST = (b'<extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}" xmlns:x14="http://schemas.'
            b'microsoft.com/office/spreadsheetml/2009/9/main"><x14:dataValidations count="1" xmlns:xm='
            b'"http://schemas.microsoft.com/office/excel/2006/main"><x14:dataValidation type="list" '
            b'allowBlank="1"><x14:formula1><xm:f>Lists!$A$1:$A$3</xm:f></x14:formula1><xm:sqref>E2:E1000'
            b'</xm:sqref></x14:dataValidation></x14:dataValidations></ext>'
            b'<ext uri="{78C0D931-6437-407d-A8EE-F0AAD7539E65}" xmlns:x14="http://schemas.microsoft.com/'
            b'office/spreadsheetml/2009/9/main"><x14:conditionalFormattings><x14:conditionalFormatting '
            b'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"><x14:cfRule type="expression"'
            b' priority="1" id="{00000000-0000-0000-0000-000000000001}"><xm:f>Lists!$A$1="x"</xm:f>'
            b'</x14:cfRule><xm:sqref>D2:D1000</xm:sqref></x14:conditionalFormatting>'
            b'</x14:conditionalFormattings></ext></extLst>')


def prefixed(xml: bytes) -> bytes:
    """The sheet written with its main namespace under the prefix x: (as some tools write it)."""
    xml = re.sub(rb"<(/?)(\w+)(?=[\s/>])", rb"<\1x:\2", xml)
    return xml.replace(b' xmlns="', b' xmlns:x="', 1)


def test_a_drop_down_list_from_another_sheet_is_no_formula():
    sheet = reader.read_bytes(edited(good_sheet(), {SHEET: before_end(X14_LIST)}))
    assert reader.layout(sheet, "positive") and len(sheet.rows) == 1

    def add_formula(workbook):
        workbook.active["D2"] = "=40+1"

    with_formula = good_sheet(build=add_formula)
    assert "contains formulas" in refused(edited(with_formula, {SHEET: before_end(X14_LIST)}))
    assert "contains formulas" in refused(edited(with_formula, {SHEET: prefixed}))


STRICT = {b"http://schemas.openxmlformats.org/spreadsheetml/2006/main":
          b"http://purl.oclc.org/ooxml/spreadsheetml/main",
          b"http://schemas.openxmlformats.org/officeDocument/2006/relationships":
          b"http://purl.oclc.org/ooxml/officeDocument/relationships"}


_INLINE = re.compile(rb'<c([^>]*) t="inlineStr"><is><t>([^<]*)</t></is></c>')


def with_shared_strings(data: bytes) -> bytes:
    """The workbook with its text in shared strings, as Excel writes it (openpyxl writes it in
    the cells)."""
    texts: dict[bytes, int] = {}

    def share(match: re.Match) -> bytes:
        index = texts.setdefault(match[2], len(texts))
        return b'<c%s t="s"><v>%d</v></c>' % (match[1], index)

    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    sheets = {n: (lambda xml: _INLINE.sub(share, xml)) for n in names if n.startswith("xl/worksheets/")}
    data = edited(data, sheets)
    table = (b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             + b"".join(b"<si><t>%s</t></si>" % text for text in texts) + b"</sst>")
    return edited(data, {
        "xl/sharedStrings.xml": lambda _: table,
        "xl/_rels/workbook.xml.rels": lambda xml: xml.replace(b"</Relationships>", (
            b'<Relationship Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            b'sharedStrings" Target="sharedStrings.xml" Id="rIdShared" /></Relationships>')),
        "[Content_Types].xml": lambda xml: xml.replace(b"</Types>", (
            b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
            b'officedocument.spreadsheetml.sharedStrings+xml" /></Types>'))})


def strict(data: bytes) -> bytes:
    """The workbook saved as Excel's "Strict Open XML Spreadsheet", its text in shared strings:
    its namespaces (and the relationship types, which begin with one) are Strict's."""
    def to_strict(xml: bytes) -> bytes:
        for transitional, strict_name in STRICT.items():
            xml = xml.replace(transitional, strict_name)
        return xml.replace(b"<workbook ", b'<workbook conformance="strict" ', 1)

    data = with_shared_strings(data)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    return edited(data, {n: to_strict for n in names if n.endswith((".xml", ".rels"))})


def test_a_strict_open_xml_workbook_is_read_as_its_transitional_twin():
    data = good_sheet()
    assert b"purl.oclc.org" in zipfile.ZipFile(io.BytesIO(strict(data))).read("xl/workbook.xml")
    assert b't="s"' in zipfile.ZipFile(io.BytesIO(strict(data))).read(SHEET)
    sheet, twin = reader.read_bytes(strict(data)), reader.read_bytes(data)
    assert (sheet.headers, sheet.rows) == (twin.headers, twin.rows) and sheet.rows
    assert reader.layout(sheet, "positive").template.kind == "positive"

    # Every check applies to a Strict workbook as to its twin.
    def formula(workbook):
        workbook.active["D2"] = "=40+1"

    def merged(workbook):
        workbook.active.merge_cells("D2:E2")

    def hidden_sheet(workbook):
        workbook.create_sheet("Lookups").sheet_state = "hidden"

    def hidden_column(workbook):
        workbook.active.column_dimensions["D"].hidden = True

    def far(workbook):
        workbook.active["A60000"] = "x"

    def second_batch(workbook):
        workbook.create_sheet("More").append(positive_row()[0])

    def date1904(workbook):
        workbook.epoch = CALENDAR_MAC_1904

    for build, words in ((formula, "contains formulas"), (merged, "merged cells (D2:E2)"),
                         (hidden_sheet, "hidden sheets (sheet 2 in order)"),
                         (hidden_column, "hidden columns holding values (D)"),
                         (far, "the first sheet reaches beyond column CV"),
                         (second_batch, "sheet 2 (in order) also holds template columns")):
        assert words in refused(strict(good_sheet(build=build))), build.__name__
    assert reader.read_bytes(strict(good_sheet(build=date1904))).date1904


FAR = "the first sheet reaches beyond column CV or has more than 49,999 rows"
# Excel writes a formatted row or a styled cell without a value: python-calamine makes nothing of
# them (no cell, no memory), so they are not where the sheet reaches.
FORMATTED = [b'<row r="1048576" ht="15" customHeight="1"/>',
             b'<row r="60000"><c r="A60000" s="1"/></row><row r="1048576"><c r="BI1048576" s="1"></c></row>',
             b'<row r="3"><c r="XFD3" s="1"/></row>',
             b'<row r="60000" ht="15"><c s="1"/><c s="1"></c></row>']  # cells placed by position
# A value, even an empty text, makes a cell of the reader's rectangle: still refused.
VALUES = [b'<row r="60000"><c r="A60000"><v>1</v></c></row>',
          b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is/></c></row>',
          b'<row r="3"><c r="CW3" t="str"><v></v></c></row>',
          b'<row r="3"><c r="CW3" xmlns:q="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
          b'<q:v>1</q:v></c></row>',
          b'<row r="3"><c r="CW3" s="1"><f>1+1</f><v>2</v></c></row>',
          b'<row r="60000" ht="15"><c s="1"/><c><v>1</v></c></row>']  # cells placed by position


def with_rows(rows: bytes) -> bytes:
    return edited(good_sheet(), {SHEET: lambda xml: xml.replace(b"</sheetData>", rows + b"</sheetData>")})


def test_formatting_far_below_the_data_is_not_where_the_sheet_reaches():
    for rows in FORMATTED:
        sheet = reader.read_bytes(with_rows(rows))
        assert len(sheet.rows) == 1 and reader.layout(sheet, "positive"), rows
    for rows in VALUES:
        assert refused(with_rows(rows)).startswith(FAR), rows


def test_a_hidden_column_holding_only_its_header_is_accepted():
    """A site hides the template's columns it does not fill: only the header is there. Any
    value below it is still refused, the site cannot see it."""
    def hide_hospital(workbook):
        workbook.active.column_dimensions["C"].hidden = True

    headers, row = positive_row(age=40)
    assert headers[2] == "Hospital" and row[2] is None
    sheet = reader.read_bytes(xlsx_bytes(headers, [row], build=hide_hospital))
    assert len(sheet.rows) == 1 and reader.layout(sheet, "positive")
    _, filled = positive_row(age=41, hospital="Example Hospital")
    message = refused(xlsx_bytes(headers, [row, filled], build=hide_hospital))
    assert "hidden columns holding values (C)" in message
