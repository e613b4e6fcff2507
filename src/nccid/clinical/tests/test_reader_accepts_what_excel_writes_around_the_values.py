"""What Excel writes around a sheet's values does not refuse it: a drop-down list whose source is
another sheet, a Strict Open XML workbook, formatting far below the data, a hidden column holding
only its header. The checks still refuse what they guard against in the same files."""

import io
import re
import zipfile

import pytest

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
    """The xlsx with each part named in ``edits`` passed through its function (bytes -> bytes)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            part = source.read(info.filename)
            archive.writestr(info.filename, edits.get(info.filename, lambda x: x)(part))
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
