"""An odd or hostile xlsx cannot exhaust memory: the reader builds the whole rectangle from the
first to the last cell holding a value (about 40 bytes a cell, empty or not), and holds every
shared string. A 6 KB file with one value at ZZ99999 took 2.7 GB; a 1.2 MB file whose shared
strings unpack to 486 MB took 1.65 GB. Both are refused before the sheet is read."""

import io
import re
import subprocess
import sys
import zipfile

import pytest
from openpyxl import Workbook

from nccid.clinical import reader
from nccid.clinical.reader import SpreadsheetRejected

from .helpers import positive_row, xlsx_bytes

FAR = "the first sheet reaches beyond column CV or has more than 49,999 rows"


def good_sheet() -> bytes:
    headers, row = positive_row(age=40)
    return xlsx_bytes(headers, [row])


def refused(data: bytes) -> str:
    with pytest.raises(SpreadsheetRejected) as caught:
        reader.read_bytes(data)
    return str(caught.value)


def with_value_at(row: int, column: int) -> bytes:
    headers, first = positive_row(age=40)
    workbook = Workbook()
    workbook.active.append(headers)
    workbook.active.append(first)
    workbook.active.cell(row=row, column=column, value="x")
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def replaced(data: bytes, name: str, text: bytes, declared_size: int | None = None) -> bytes:
    """The xlsx with part ``name`` replaced (or added)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            if info.filename != name:
                archive.writestr(info.filename, source.read(info.filename))
        archive.writestr(name, text)
    return out.getvalue()


def sheet_xml(data: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")


def test_a_value_beyond_the_limits_is_refused_and_one_within_them_is_read():
    for row, column in ((99_999, 702), (50_000, 1), (2, 101)):
        assert refused(with_value_at(row, column)).startswith(FAR)
    assert reader.read_bytes(with_value_at(49_999, 100)).rows  # the far corner allowed


def test_rows_and_cells_placed_by_position_are_followed_to_where_they_reach():
    """Cells and rows may leave out their reference (r="B2"): each then follows the one before,
    so a row of 101 bare cells reaches column 101 without a reference saying so."""
    xml = sheet_xml(good_sheet())
    wide = b"<row>" + b"<c/>" * 100 + b'<c t="inlineStr"><is><t>x</t></is></c></row>'
    assert refused(replaced(good_sheet(), "xl/worksheets/sheet1.xml",
                            xml.replace(b"</sheetData>", wide + b"</sheetData>"))).startswith(FAR)
    deep = b"<row/>" * 50_000 + b'<row><c t="inlineStr"><is><t>x</t></is></c></row>'
    assert refused(replaced(good_sheet(), "xl/worksheets/sheet1.xml",
                            xml.replace(b"</sheetData>", deep + b"</sheetData>"))).startswith(FAR)
    # A sheet written without references at all is read as usual.
    bare = re.sub(rb' r="[A-Z]*[0-9]+"', b"", xml)
    assert b' r="' not in bare.split(b"<sheetData>")[1]
    sheet = reader.read_bytes(replaced(good_sheet(), "xl/worksheets/sheet1.xml", bare))
    assert sheet.headers == reader.read_bytes(good_sheet()).headers and len(sheet.rows) == 1


def shared_strings(count: int) -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
            b'spreadsheetml/2006/main">' + b"<si><t>a</t></si>" * count + b"</sst>")


def test_shared_strings_beyond_their_limit_are_refused_while_unpacking(monkeypatch):
    monkeypatch.setitem(reader.PART_LIMITS, "xl/sharedStrings.xml", 1024 * 1024)
    data = replaced(good_sheet(), "xl/sharedStrings.xml", shared_strings(70_000))  # 1.2 MB
    message = refused(data)
    assert message.startswith("the spreadsheet's text (its shared strings) is more than 1 MB once unpacked")
    assert reader.read_bytes(replaced(good_sheet(), "xl/sharedStrings.xml", shared_strings(50_000))).rows


def test_a_part_larger_than_its_zip_entry_declares_is_refused():
    """The declared size is not trusted: unpacking stops there and the checksum fails."""
    data = bytearray(replaced(good_sheet(), "xl/sharedStrings.xml", shared_strings(10_000)))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("xl/sharedStrings.xml")
    small = (1000).to_bytes(4, "little")
    data[info.header_offset + 22:info.header_offset + 26] = small  # local header
    central = bytes(data).rindex(b"PK\x01\x02", 0, bytes(data).rindex(b"xl/sharedStrings.xml"))
    data[central + 24:central + 28] = small  # central directory
    assert "damaged" in refused(bytes(data))


# The peak of this process's own memory (VmHWM): getrusage's ru_maxrss survives exec on Linux,
# so a child of a big test process would report its parent's peak.
CHILD = """
import re, sys
from nccid.clinical import reader
for path in sys.argv[1:]:
    try:
        reader.read_path(path)
    except reader.SpreadsheetRejected:
        pass
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


def test_hostile_uploads_are_read_or_refused_well_under_500_mb(tmp_path):
    """The peak memory of a fresh process reading the worst cases: the far corner the limits
    allow, the reviewer's far cell (2.7 GB before), 100 MB of shared strings, and a formatted
    row and styled empty cell at the sheet's last corner (read: they make no cell)."""
    formatted = sheet_xml(good_sheet()).replace(b"</sheetData>", (
        b'<row r="1048575"><c r="XFD1048575" s="0"/></row><row r="1048576" ht="15" customHeight="1"/>'
        b"</sheetData>"))
    files = {"corner.xlsx": with_value_at(49_999, 100), "far.xlsx": with_value_at(99_999, 702),
             "text.xlsx": replaced(good_sheet(), "xl/sharedStrings.xml", shared_strings(6_000_000)),
             "formatted.xlsx": replaced(good_sheet(), "xl/worksheets/sheet1.xml", formatted)}
    assert reader.read_bytes(files["formatted.xlsx"]).rows
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    done = subprocess.run([sys.executable, "-c", CHILD, *(str(tmp_path / n) for n in files)],
                          capture_output=True, text=True, check=True, timeout=120)
    assert int(done.stdout.split()[-1]) < 350  # megabytes


# python-calamine reads a reference's letters in either case, in single quotes, with spaces
# around "=": each of these far cells made it abort the process (it set aside 550 GB).
ODD_REFERENCES = [b'<row r="3"><c r="xfd1048576"><v>1</v></c></row>',
                  b"<row r='3'><c r='XFD1048576'><v>1</v></c></row>",
                  b'<row r="3"><c r = "XFD1048576"><v>1</v></c></row>',
                  b"<row r='1048576'><c><v>1</v></c></row>"]
REFUSALS = """
import sys
from nccid.clinical import reader
for path in sys.argv[1:]:
    try:
        reader.read_path(path)
        print("read")
    except reader.SpreadsheetRejected as refused:
        print(str(refused).split(":")[0])
"""


def test_far_references_written_in_any_case_or_quoting_are_refused(tmp_path):
    """Read in a child process: were one of them read, it would abort the process."""
    xml = sheet_xml(good_sheet())
    paths = []
    for number, rows in enumerate(ODD_REFERENCES):
        paths.append(tmp_path / f"odd{number}.xlsx")
        paths[-1].write_bytes(replaced(good_sheet(), "xl/worksheets/sheet1.xml",
                                       xml.replace(b"</sheetData>", rows + b"</sheetData>")))
    done = subprocess.run([sys.executable, "-c", REFUSALS, *map(str, paths)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines() == [FAR] * len(ODD_REFERENCES)
