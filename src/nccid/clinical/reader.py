"""Read a clinical spreadsheet (xlsx or csv) into headers and numbered rows. Pure: no Django.

Everything that makes a file unusable as a whole is refused here, with one clear message:
too large (checked before any parsing), not a spreadsheet, empty, formulas, merged cells,
hidden sheets, values in hidden rows or columns, wrong template, unknown template version,
missing required columns. Excel error cells (#N/A, #VALUE! ...) are not values: the sheet
lists them apart (``Sheet.cell_errors``) and holds None in their place, so validation reports
each. Columns holding values under no header are listed too (``Sheet.unheaded_columns``).
The structural checks of an xlsx read its zip XML directly, which is fast; cell values are read
with python-calamine. Messages name rows and columns (by letter), never a cell's value nor a
header the template lacks.
"""

from __future__ import annotations

import csv
import difflib
import html
import io
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

from python_calamine import CalamineWorkbook

from .schema import (
    KINDS,
    Column,
    Template,
    folded,
    get_template,
    harmless_brackets,
    header_bracket,
    normalise_header,
    templates,
    unit_key,
    unit_vocabulary,
)

MAX_BYTES = 50 * 1024 * 1024
MAX_UNCOMPRESSED = 512 * 1024 * 1024  # a zip declaring more than this unpacked is refused unread
# The parts that are parsed, each measured while it is unpacked (a zip can understate sizes):
# python-calamine holds every shared string in memory, at about 2.5 times its XML's size.
PART_LIMITS = {"sheet": 160 * 1024 * 1024, "xl/sharedStrings.xml": 32 * 1024 * 1024}
OTHER_PART_LIMIT = 16 * 1024 * 1024  # workbook, relationships, styles, properties
PARSED_PARTS = ("xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/sharedStrings.xml",
                "xl/styles.xml", "docProps/core.xml", "[Content_Types].xml")
# The reader builds the rectangle from the first to the last cell holding a value, about 40
# bytes a cell even when empty: one value far away (ZZ99999) took 2.7 GB. Cells beyond these
# limits are refused before reading, which bounds that rectangle to 5 million cells (~200 MB).
MAX_COLUMNS = 100       # column CV: the widest template has 62 columns, the rest is margin
MAX_ROWS = 49_999       # rows: split bigger sheets
TOO_MANY_ROWS = f"the file has more than {MAX_ROWS:,} rows: split it into smaller files"
# A row or cell reference (` r="…"`, a literal the regex engine finds fast) beyond column CV
# (three letters, D* to Z*, CW to CZ) or at row 50,000 or beyond. python-calamine reads the
# letters in either case; a reference written otherwise (r='…', r = "…") is not a cell's first
# attribute as ` r="`, so its sheet is followed element by element (_UNPLACED).
_FAR_CELL = re.compile(rb' r="(?:[A-Za-z]{3}|[D-Zd-z][A-Za-z]|[Cc][W-Zw-z]|[A-Za-z]{0,2}(?:[0-9]{6}|[5-9][0-9]{4}))')
# An element name's prefix, if any: python-calamine reads elements by their local name, so any
# prefix XML allows (letters, also beyond ASCII, digits, "-", "." and "_") is looked through.
_PREFIX = rb"(?:[A-Za-z_\x80-\xff][\w.\-\x80-\xff]*:)?"
# A row or cell without a reference: its place follows from the elements before it.
_UNPLACED = re.compile(rb'<(?:row|c)(?=[\s/>])(?! r=")')
_PREFIXED_ROW_OR_CELL = re.compile(rb":(?:row|c|sheetData)(?=[\s/>])")
# An opening tag's attributes as XML allows them: in either quote, with spaces around "=", a
# value holding ">" or the other quote (never "<", which also bounds each search to one tag).
# The "/" of an empty element's "/>" is not part of them.
_ATTRIBUTES = rb"""(?:[^<>"'/]|/(?!>)|"[^<"]*"|'[^<']*')*"""
_ATTRIBUTE = re.compile(rb"""([^\s=<>"'/]+)\s*=\s*(?:"([^<"]*)"|'([^<']*)')""")
_ROW_OR_CELL = re.compile(rb"<" + _PREFIX + rb"(row|c)(?=[\s/>])(" + _ATTRIBUTES + rb")/?>")
_REFERENCE = re.compile(r"([A-Za-z]*)([0-9]*)")
_CELL_TAG = re.compile(rb"<" + _PREFIX + rb"c[\s/>]")
STAMP_PREFIX = "nccid-template"  # keywords of our templates: "nccid-template:positive:1.5"

# The namespaces of a Transitional workbook (Excel's usual .xlsx) and of a Strict Open XML one
# (Excel's "Strict Open XML Spreadsheet"): the same elements under other names.
_NS_MAINS = ("{http://schemas.openxmlformats.org/spreadsheetml/2006/main}",
             "{http://purl.oclc.org/ooxml/spreadsheetml/main}")
_NS_RELS = ("{http://schemas.openxmlformats.org/officeDocument/2006/relationships}",
            "{http://purl.oclc.org/ooxml/officeDocument/relationships}")
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_FORMULA = re.compile(rb"<" + _PREFIX + rb"f[\s>/]")
# Cells are in sheetData; a formula after it belongs to the sheet, not a cell: a drop-down list
# whose source is another sheet, a conditional format or sparkline of Excel 2010 (<xm:f>).
_SHEET_DATA = re.compile(rb"<" + _PREFIX + rb"sheetData[\s>/]")
_MERGE = re.compile(rb"<" + _PREFIX + rb"mergeCell(?=[\s/>])(" + _ATTRIBUTES + rb")/?>")
# A hidden row: <row r="5" ... hidden="1">; hidden columns: <col min="3" max="4" ... hidden="1"/>.
_ROW = re.compile(rb"<" + _PREFIX + rb"row(?=[\s/>])(" + _ATTRIBUTES + rb")/?>")
_COLUMNS = re.compile(rb"<" + _PREFIX + rb"col(?=[\s/>])(" + _ATTRIBUTES + rb")/?>")
# A row lower than this (ht, in points) or a column narrower than this (width, in characters)
# hides its values as hidden="1" does: Excel hides a row of height 0 and a column of width 0
# (and a <col> without a width), and below these no character of the default font (Calibri 11,
# 15-point rows) can be read; LibreOffice draws a width of 0.3 as 2 pixels.
MIN_ROW_HEIGHT = 5.0
MIN_COLUMN_WIDTH = 1.0
# A row height that may be below MIN_ROW_HEIGHT: anything but a plain number from 5 up, so the
# heights LibreOffice writes on every row (ht="12.8") are ruled out without reading their tags.
_LOW_HEIGHT = re.compile(rb"""ht\s*=\s*["'](?!\s*(?:[5-9]|[1-9][0-9]+)(?:\.[0-9]*)?\s*["'])""")
_VERSION_IN_TEXT = re.compile(r"v(?:ersion)?\s*(\d+(?:\.\d+)*)", re.IGNORECASE)
# What Excel shows for a formula that failed. An xlsx marks such a cell t="e" (python-calamine
# reads it as an empty string); a CSV, or a cell of text, holds the code as text.
EXCEL_ERRORS = frozenset({"#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NAME?", "#NUM!", "#NULL!",
                          "#GETTING_DATA", "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!",
                          "#CONNECT!", "#BUSY!", "#UNKNOWN!"})
_ERROR_TEXT = "#(?:" + "|".join(re.escape(e[1:]) for e in sorted(EXCEL_ERRORS)) + ")"
_ERROR_TEXT_STR = re.compile(_ERROR_TEXT)  # a hint only: the cells are then compared exactly
_ERROR_TEXT_BYTES = re.compile(_ERROR_TEXT.encode())
_CELL = re.compile(rb"<" + _PREFIX + rb"c(?=[\s/>])(" + _ATTRIBUTES + rb")/?>")
_CELL_VALUE = re.compile(rb"<" + _PREFIX + rb"v(?:\s" + _ATTRIBUTES + rb")?>([^<]*)<|</" + _PREFIX + rb"c>")


class SpreadsheetRejected(ValueError):
    """The file as a whole cannot be used; the message says why and what to do."""


@dataclass
class Sheet:
    headers: list[str]
    rows: list[tuple[int, tuple]]  # (1-based sheet row number, cell values padded to headers)
    format: str  # "xlsx" | "csv"
    stamp: tuple[str, str] | None = None  # (kind, version) stated by the workbook, if any
    title: str = ""
    # Excel error cells of data rows: row number -> {column index -> code ("" if not a known one)}
    cell_errors: dict[int, dict[int, str]] = field(default_factory=dict)
    unheaded_columns: list[int] = field(default_factory=list)  # hold values but have no header
    # The workbook counts days from 1904 (older Mac Excel): a date typed as a plain number is
    # a day count from 1 January 1904, not from 1900.
    date1904: bool = False


@dataclass
class Layout:
    """How a sheet's columns map onto a template."""

    template: Template
    columns: list[Column | None]  # per sheet column; None = not in the template (ignored)
    warnings: list[str] = field(default_factory=list)
    # Sheet column index -> the unit its header names, when not the template's own header:
    # its values are read in that unit (over the site's declared unit).
    header_units: dict[int, str] = field(default_factory=dict)
    # Sheet column index -> the day/month order ("DMY" | "MDY") a date column's header states
    # ("Date of admission (MM/DD/YYYY)"): its slash dates are read so (over the site's setting).
    date_orders: dict[int, str] = field(default_factory=dict)


def check_size(size: int, max_bytes: int = MAX_BYTES) -> None:
    if size > max_bytes:
        raise SpreadsheetRejected(
            f"the file is {size / 1024 / 1024:.0f} MB; the limit is {max_bytes // 1024 // 1024} MB: "
            "split it into smaller files"
        )
    if size == 0:
        raise SpreadsheetRejected("the file is empty")


def read_path(path: Path, max_bytes: int = MAX_BYTES) -> Sheet:
    """Read a file from disk, refusing an oversized file before reading any of it."""
    path = Path(path)
    check_size(path.stat().st_size, max_bytes)
    return read_bytes(path.read_bytes(), max_bytes)


def read_bytes(data: bytes, max_bytes: int = MAX_BYTES) -> Sheet:
    check_size(len(data), max_bytes)
    if data[:4] == b"PK\x03\x04":
        return _read_xlsx(data)
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        # A password-protected .xlsx is an Office container too, holding an EncryptedPackage
        # stream (directory entry names are UTF-16).
        if "EncryptedPackage".encode("utf-16-le") in data:
            raise SpreadsheetRejected(
                "the file is password-protected: remove the password (File > Info > Protect "
                "Workbook) and upload again")
        raise SpreadsheetRejected(
            "this is an old Excel (.xls) or other Office file: save it as .xlsx or CSV and upload again"
        )
    return _read_csv(data)


# --- xlsx ---------------------------------------------------------------------------------

def _read_xlsx(data: bytes) -> Sheet:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise SpreadsheetRejected("the file is not a spreadsheet (a damaged or non-Excel zip file)") from exc
    if _part(archive, "xl/workbook.xml") is None:
        if _is_opendocument(archive):
            raise SpreadsheetRejected("this is an OpenDocument (.ods) file: save it as .xlsx or CSV "
                                      "and upload again")
        raise SpreadsheetRejected("the file is not a spreadsheet: upload the filled template as .xlsx or CSV")
    if sum(i.file_size for i in archive.infolist()) > MAX_UNCOMPRESSED:
        raise SpreadsheetRejected("the spreadsheet is too large once unpacked: split it into smaller files")
    parts = _sheet_parts(archive)
    sheet_path, sheet_name = parts.first, "1"
    error_text = False  # does the shared text hold an Excel error code (as text)?
    for name in PARSED_PARTS:
        if _part(archive, name) is not None:
            shared = name == "xl/sharedStrings.xml"
            part = _inflated(archive, name, PART_LIMITS.get(name, OTHER_PART_LIMIT), keep=shared)
            error_text = error_text or (shared and b"#" in part and bool(_ERROR_TEXT_BYTES.search(part)))
            del part
    xml = _inflated(archive, sheet_path, PART_LIMITS["sheet"])
    _refuse_far_cells(xml)
    if _has_cell_formula(xml):
        raise SpreadsheetRejected(
            f"sheet {sheet_name} contains formulas: paste the values only (Paste Special > Values) "
            "and upload again"
        )
    merged = [_attributes(m).get(b"ref", "") for m in _MERGE.findall(xml)] if b"mergeCell" in xml else []
    if merged:
        raise SpreadsheetRejected(
            f"sheet {sheet_name} has merged cells ({_some(_merged_areas(merged))}): "
            "unmerge them, one value per cell"
        )
    stamp, title = _stamp(archive)
    # What the sheet's XML tells is taken before python-calamine reads the values: the XML
    # (three times the values' size) is let go first, so the two are never held together.
    errors = _error_cells(xml)
    error_text = error_text or (b"#" in xml and bool(_ERROR_TEXT_BYTES.search(xml)))  # inline text too
    hidden = _hidden_rows(xml), _hidden_columns(xml)
    del xml
    try:
        values = CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python(
            skip_empty_area=False)
    except Exception as exc:  # calamine raises several types for damaged files
        raise SpreadsheetRejected("the spreadsheet could not be read (it may be damaged)") from exc
    if error_text:
        errors.update(_error_texts(values))
    _refuse_hidden_values(hidden, values, sheet_name, _headers_row(values, {row for row, _ in errors}), errors)
    _refuse_template_headers_elsewhere(archive, parts.others)
    sheet = _sheet(values, "xlsx", stamp, title, errors)
    sheet.date1904 = parts.date1904
    return sheet


def _attributes(tag: bytes) -> dict[bytes, str]:
    """The attributes of an opening tag (``_ATTRIBUTES``) by name, their values read as an XML
    parser reads them (character references replaced). The first of a repeated name counts,
    as python-calamine reads it."""
    found: dict[bytes, str] = {}
    for name, double, single in _ATTRIBUTE.findall(tag):
        found.setdefault(name, html.unescape((double or single).decode("utf-8", "replace")))
    return found


def _true(value: str | None) -> bool:
    """An XML Schema boolean set true (its value may have spaces around it)."""
    return value is not None and value.strip() in ("1", "true")


def _merged_areas(references: list[str]) -> list[str]:
    """The areas of merged cells as messages name them (only what reads as cells: a sheet's
    attribute may hold any text)."""
    return [r.upper() for r in references if re.fullmatch(r"[A-Za-z]{1,3}[0-9]+(?::[A-Za-z]{1,3}[0-9]+)?", r)]


def _has_cell_formula(xml: bytes) -> bool:
    """Does a cell hold a formula? Only the span from sheetData's start to its end is searched
    (whatever the prefixes): what comes after it holds the sheet's own formulas."""
    # The regular expressions are slow on a large sheet: a plain substring test rules most out.
    if b"<f" not in xml and b":f" not in xml:
        return False
    start = _SHEET_DATA.search(xml)
    return start is not None and bool(_FORMULA.search(xml, start.end(), xml.rfind(b"sheetData>")))


def _error_cells(xml: bytes) -> dict[tuple[int, int], str]:
    """The cells of type error, by (row, column) index from 0, and their codes ("" for a code
    that is not a known one: the sheet's text is never echoed). Found in the XML, because
    python-calamine reads them as empty strings; a plain substring test decides most sheets."""
    if b'"e"' not in xml and b"'e'" not in xml:
        return {}
    if _placed_by_position(xml):
        return {place: _error_code(xml, match.end())
                for place, match in _placed_cells(xml) if _of_type_error(match.group(2))}
    errors = {}
    cells = [*_tags_holding(xml, b'"e"', _CELL), *_tags_holding(xml, b"'e'", _CELL)]
    for match in (m for m in cells if _of_type_error(m.group(1))):
        reference = _REFERENCE.fullmatch(_attributes(match.group(1)).get(b"r", ""))
        if reference is None or not reference[1] or not reference[2]:
            continue  # python-calamine refuses the sheet
        place = (int(reference[2]) - 1, _column_number(reference[1]) - 1)
        errors[place] = _error_code(xml, match.end())
    return errors


def _of_type_error(attributes: bytes) -> bool:
    return _attributes(attributes).get(b"t") == "e"


def _tags_holding(xml: bytes, text: bytes, tag: re.Pattern):
    """The opening tags matching ``tag`` that hold ``text``, found from the text: fast when
    the text is rare (a tag cannot hold "<", so the one holding it begins at the "<" before)."""
    start = 0
    while (found := xml.find(text, start)) >= 0:
        opened = xml.rfind(b"<", 0, found)
        match = tag.match(xml, opened) if opened >= 0 else None
        if match is not None and match.end() > found:
            yield match
            start = match.end()
        else:
            start = found + len(text)


def _error_code(xml: bytes, start: int) -> str:
    """The code in the value of the error cell whose opening tag ends at ``start``; "" for an
    empty cell or a code that is not a known one."""
    if xml[start - 2:start] == b"/>":
        return ""
    value = _CELL_VALUE.search(xml, start)
    code = value.group(1).decode(errors="replace").strip() if value and value.group(1) is not None else ""
    return code if code in EXCEL_ERRORS else ""


def _error_texts(values: list[list]) -> dict[tuple[int, int], str]:
    """Cells whose text is an Excel error code (slow: only when the text holds one)."""
    return {(r, c): v.strip() for r, row in enumerate(values) for c, v in enumerate(row)
            if type(v) is str and v.strip() in EXCEL_ERRORS}


def _inflated(archive: zipfile.ZipFile, name: str, limit: int, keep: bool = True) -> bytes:
    """A part of the xlsx, unpacked a megabyte at a time and refused once beyond ``limit``
    (the size the zip declares is not trusted; a part whose real size differs fails its
    checksum and is refused as damaged)."""
    chunks, size = [], 0
    try:
        with archive.open(_part(archive, name) or name) as part:
            while chunk := part.read(1024 * 1024):
                size += len(chunk)
                if size > limit:
                    raise SpreadsheetRejected(_too_large(name, limit))
                if keep:
                    chunks.append(chunk)
    except (KeyError, zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as exc:
        raise SpreadsheetRejected("the spreadsheet is damaged (a part of it cannot be unpacked)") from exc
    return b"".join(chunks)


def _too_large(name: str, limit: int) -> str:
    megabytes = limit // 1024 // 1024
    if name == "xl/sharedStrings.xml":
        return (f"the spreadsheet's text (its shared strings) is more than {megabytes} MB once "
                "unpacked: split the rows into smaller files, or save it as CSV")
    if name.startswith("xl/worksheets/"):
        return (f"the first sheet is more than {megabytes} MB once unpacked: split the rows into "
                "smaller files")
    return f"a part of the spreadsheet ({name}) is more than {megabytes} MB once unpacked"


def _refuse_far_cells(xml: bytes) -> None:
    """Refuse a sheet whose values reach beyond MAX_COLUMNS or MAX_ROWS, before it is read."""
    if _placed_by_position(xml):
        rows, columns = _extent(xml)
        far = rows > MAX_ROWS or columns > MAX_COLUMNS
    else:  # every cell has its reference (a row's own is not where its cells are)
        far = any(_holds_value(xml, xml.rfind(b"<", 0, match.start()))
                  for match in _FAR_CELL.finditer(xml))
    if far:
        raise SpreadsheetRejected(
            f"the first sheet reaches beyond column {_column_letter(MAX_COLUMNS - 1)} or has more "
            f"than {MAX_ROWS:,} rows: delete what lies beyond the template's columns and split "
            "the rows into smaller files")


def _placed_by_position(xml: bytes) -> bool:
    """Must the sheet's rows and cells be followed element by element: does one lack its
    reference as its first attribute, or is one prefixed (two searches: each finds a literal
    fast, where one pattern for both would not)?"""
    return bool(_UNPLACED.search(xml) or _PREFIXED_ROW_OR_CELL.search(xml))


def _extent(xml: bytes) -> tuple[int, int]:
    """The last row and column a cell holding a value reaches, placing rows and cells without
    a reference after the one before, as the reader does (slow: only for such sheets)."""
    last_row = last_column = 0
    for (row, column), match in _placed_cells(xml):
        if _holds_value(xml, match.start()):
            last_row, last_column = max(last_row, row + 1), max(last_column, column + 1)
    return last_row, last_column


def _holds_value(xml: bytes, start: int) -> bool:
    """Is the element whose tag opens at ``start`` a cell holding something (a value, even an
    empty text, which python-calamine makes a cell of its rectangle)? A styled cell without one
    (Excel writes them far below the data, as it writes formatted rows) makes nothing, so it is
    not where the sheet reaches. Anything inside a cell counts: python-calamine reads a value,
    a formula or an inline text there, and refuses anything else."""
    if not _CELL_TAG.match(xml, start):
        return False
    opened = xml.find(b">", start)
    if opened < 0 or xml[opened - 1:opened] == b"/":
        return opened < 0  # a cut tag: count it (python-calamine refuses it anyway)
    inside = xml.find(b"<", opened)
    return inside < 0 or xml[inside + 1:inside + 2] != b"/"


def _placed(xml: bytes):
    """Each row and cell element with its (row, column) index from 0 (a row's column is -1),
    placing those without a reference after the one before."""
    row = column = 0
    for match in _ROW_OR_CELL.finditer(xml):
        reference = _REFERENCE.fullmatch(_attributes(match.group(2)).get(b"r", ""))
        letters, digits = reference.groups() if reference else ("", "")
        if match.group(1) == b"row":
            row, column = (int(digits) if digits else row + 1), 0
        else:
            column = _column_number(letters) if letters else column + 1
            row = int(digits) if digits else row
        yield (row - 1, column - 1), match


def _placed_cells(xml: bytes):
    return ((place, match) for place, match in _placed(xml) if match.group(1) == b"c")


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number


def _refuse_hidden_values(hidden: tuple[list[int], list[tuple[int, int]]], values: list[list],
                          sheet_name: str, header: int | None, errors: dict[tuple[int, int], str]) -> None:
    """Values in hidden rows or columns are refused, like hidden sheets: the site would send
    data it cannot see (a hidden column of names, say). A row or column too small to show a
    character (MIN_ROW_HEIGHT, MIN_COLUMN_WIDTH: height or width 0, say) is hidden too. An
    Excel error cell (``errors``, by (row, column) index) counts as a value: it would be
    reported, unseen. Hidden empty rows and columns (Excel's way of tidying the unused part of
    a sheet) are fine, and so is a hidden column holding only its header (row index
    ``header``): a template column the site does not fill. Named by row number and letter."""
    hidden_rows, hidden_columns = hidden  # (_hidden_rows, _hidden_columns of the sheet's XML)
    if not hidden_rows and not hidden_columns:
        return
    error_rows = {row for row, _ in errors}
    rows = [r for r in hidden_rows if r - 1 in error_rows
            or (r <= len(values) and any(_filled(c) for c in values[r - 1]))]
    error_columns = {column for row, column in errors if row != header}
    columns = []
    for low, high in hidden_columns:
        high = min(high, max([0, *(len(row) for row in values), *(c + 1 for c in error_columns)]))
        used = [c for c in range(low, high + 1) if c - 1 in error_columns
                or any(c <= len(row) and _filled(row[c - 1]) for i, row in enumerate(values) if i != header)]
        columns += [_column_letter(c - 1) for c in used]
    problems = []
    if rows:
        problems.append("hidden rows holding values (" + _some(str(r) for r in rows) + ")")
    if columns:
        problems.append("hidden columns holding values (" + _some(columns) + ")")
    if problems:
        raise SpreadsheetRejected(
            f"sheet {sheet_name} has {' and '.join(problems)}: unhide them (a row lower than "
            f"{MIN_ROW_HEIGHT:g} points or a column narrower than {MIN_COLUMN_WIDTH:g} character "
            "counts as hidden: make it taller or wider), check what they hold, and upload again")


def _hidden_rows(xml: bytes) -> list[int]:
    """The numbers of the hidden rows (or too low to read). A row without a reference follows
    the one before (as python-calamine places its cells): only then are all rows followed
    (slow). The others are found from the text of what hides them."""
    tags = {m.start(): m for m in _tags_holding(xml, b"hidden", _ROW)}
    tags.update((m.start(), m) for m in _low_rows(xml))
    hidden = [a for a in (_attributes(m.group(1)) for _, m in sorted(tags.items())) if _row_hidden(a)]
    numbers = [_row_number(a) for a in hidden]
    if None not in numbers:
        return numbers
    placed, number = [], 0
    for match in _ROW.finditer(xml):
        attributes = _attributes(match.group(1))
        number = _row_number(attributes) or number + 1
        if _row_hidden(attributes):
            placed.append(number)
    return placed


def _low_rows(xml: bytes):
    """The row tags whose height may be below MIN_ROW_HEIGHT, found from the text "ht" (fast,
    as in _tags_holding: a search of the whole sheet by the pattern took 3 ms a MB); each is
    then read as any tag is."""
    start = 0
    while (found := xml.find(b"ht", start)) >= 0:
        start = found + 2
        if not xml[found - 1:found].isspace() or not _LOW_HEIGHT.match(xml, found):
            continue  # part of another name (weight=), a text, or a height from 5 up
        opened = xml.rfind(b"<", 0, found)
        match = _ROW.match(xml, opened) if opened >= 0 else None
        if match is not None and match.end() > found:
            yield match
            start = match.end()


def _row_hidden(attributes: dict[bytes, str]) -> bool:
    return _true(attributes.get(b"hidden")) or _below(attributes.get(b"ht"), MIN_ROW_HEIGHT)


def _below(value: str | None, minimum: float) -> bool:
    """Is an attribute's number below ``minimum``? (Not a number: no; Excel would repair it.)"""
    try:
        return value is not None and float(value.strip()) < minimum
    except ValueError:
        return False


def _row_number(attributes: dict[bytes, str]) -> int | None:
    reference = _REFERENCE.fullmatch(attributes.get(b"r", ""))
    return int(reference[2]) if reference and reference[2] else None


def _hidden_columns(xml: bytes) -> list[tuple[int, int]]:
    """The (first, last) column numbers of each run of hidden columns: hidden, narrower than
    MIN_COLUMN_WIDTH, or without a width (which Excel reads as 0)."""
    runs = []
    for match in _tags_holding(xml, b"col", _COLUMNS):  # the few tags named col, from the text
        attributes = _attributes(match.group(1))
        low, high = attributes.get(b"min", "").strip(), attributes.get(b"max", "").strip()
        width = attributes.get(b"width")
        narrow = width is None or _below(width, MIN_COLUMN_WIDTH)
        if (_true(attributes.get(b"hidden")) or narrow) and low.isdigit() and high.isdigit():
            runs.append((int(low), int(high)))
    return runs


def _some(items) -> str:
    items = list(items)
    return ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")


def _unpacked(archive: zipfile.ZipFile, name: str) -> bytes:
    """One part of the xlsx, or a refusal if it cannot be unpacked (a damaged entry)."""
    try:
        return archive.read(_part(archive, name) or name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as exc:
        raise SpreadsheetRejected("the spreadsheet is damaged (a part of it cannot be unpacked)") from exc


def _part(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    """The entry python-calamine reads as the part ``name``: the last one of that name in any
    ASCII case ("xl/SharedStrings.xml" is the shared strings part), None if there is none."""
    wanted = name.lower()
    return next((i for i in reversed(archive.infolist())
                 if i.filename.isascii() and i.filename.lower() == wanted), None)


@dataclass(frozen=True)
class _SheetParts:
    first: str  # the first sheet's path in the archive
    others: list[tuple[str, str]]  # (position as messages name it, path) of the other worksheets
    date1904: bool


def _sheet_parts(archive: zipfile.ZipFile) -> _SheetParts:
    """The sheets' paths in the archive, and the workbook's date system. Sheets are named by
    position, never by their name: a sheet's name may be anything (a patient's, say)."""
    try:
        workbook = ElementTree.fromstring(_unpacked(archive, "xl/workbook.xml"))
        rels = ElementTree.fromstring(_unpacked(archive, "xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError) as exc:
        raise SpreadsheetRejected("the spreadsheet's structure is damaged") from exc
    main = _namespace(workbook.tag)
    sheets = workbook.findall(f"{main}sheets/{main}sheet") if main in _NS_MAINS else []
    if not sheets:
        raise SpreadsheetRejected("the spreadsheet has no sheets")
    hidden = [str(n) for n, s in enumerate(sheets, 1) if s.get("state") in ("hidden", "veryHidden")]
    if hidden:
        raise SpreadsheetRejected(
            f"the spreadsheet has hidden sheets (sheet {', '.join(hidden)} in order): delete them "
            "(or unhide and check them) and upload again"
        )
    targets = {r.get("Id"): r.get("Target", "") for r in rels.findall(f"{_NS_PKG_REL}Relationship")}
    paths = [_part_path(targets.get(_relationship_id(s), "")) for s in sheets]
    if _part(archive, paths[0]) is None:
        raise SpreadsheetRejected("the spreadsheet's first sheet is missing")
    others = [(str(n), path) for n, path in enumerate(paths[1:], 2)
              if _part(archive, path) is not None and path.startswith("xl/worksheets/")]  # not chart sheets
    properties = workbook.find(f"{main}workbookPr")
    date1904 = properties is not None and properties.get("date1904", "") in ("1", "true")
    return _SheetParts(paths[0], others, date1904)


def _namespace(tag: str) -> str:
    """"{uri}" of an ElementTree tag ("" when it has none)."""
    return tag[:tag.find("}") + 1]


def _relationship_id(sheet: ElementTree.Element) -> str:
    return next((sheet.get(f"{ns}id") for ns in _NS_RELS if sheet.get(f"{ns}id") is not None), "")


def _part_path(target: str) -> str:
    return target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)


def _is_opendocument(archive: zipfile.ZipFile) -> bool:
    if "mimetype" not in archive.namelist():
        return False
    return _inflated(archive, "mimetype", 1024).startswith(b"application/vnd.oasis.opendocument")


# --- rows on other sheets: only the first sheet is read --------------------------------------

_ROW_ELEMENT = re.compile(rb"<" + _PREFIX + rb"row(?=[\s/>])" + _ATTRIBUTES
                          + rb"(?:/>|>(.*?)</" + _PREFIX + rb"row>)", re.DOTALL)
_CELL_ELEMENT = re.compile(rb"<" + _PREFIX + rb"c(?=[\s/>])(" + _ATTRIBUTES
                           + rb")(?:/>|>(.*?)</" + _PREFIX + rb"c>)", re.DOTALL)
_VALUE_TEXT = re.compile(rb"<" + _PREFIX + rb"(?:v|t)(?:\s[^>]*)?>([^<]*)<", re.DOTALL)


def _refuse_template_headers_elsewhere(archive: zipfile.ZipFile, others: list[tuple[str, str]]) -> None:
    """Only the first sheet is read: another sheet whose first filled row holds an identifier
    column (NHS/CHI Number, Hospital (Internal) Number) holds patients who would be silently
    left out (a second batch, or the sheet that was active when the file was saved). Other
    template headers there are a drop-down list ("Sex | Smoking status") or a summary
    ("Hospital | Death | Count"), which hold no patient; our template's About sheet holds prose."""
    every = templates().values()
    for position, path in others:
        row = _first_filled_row(archive, path)
        if any(c is not None and c.identifier is not None
               for c in (t.column_for(text) for text in row for t in every)):
            raise SpreadsheetRejected(
                f"sheet {position} (in order) also holds template columns in its first row: only "
                "the first sheet is read, so put every row on the first sheet and delete the "
                "others (or their headers), then upload again")


def _first_filled_row(archive: zipfile.ZipFile, path: str) -> list[str]:
    """The texts of the first row of a sheet holding a value, read from its XML without
    loading the sheet (it may be large); shared strings are looked up as far as needed."""
    xml = _inflated(archive, path, PART_LIMITS["sheet"])
    for row in _ROW_ELEMENT.finditer(xml):
        cells = [(_attributes(attrs).get(b"t", "n"), _VALUE_TEXT.findall(body or b""))
                 for attrs, body in _CELL_ELEMENT.findall(row.group(1) or b"")]
        filled = [(kind, b"".join(texts)) for kind, texts in cells if texts]
        if any(text.strip() for _, text in filled):
            return _cell_texts(archive, filled)
    return []


def _cell_texts(archive: zipfile.ZipFile, cells: list[tuple[str, bytes]]) -> list[str]:
    wanted = {int(text) for kind, text in cells if kind == "s" and text.strip().isdigit()}
    shared = _shared_strings(archive, wanted)
    return [shared.get(int(text), "") if kind == "s" and text.strip().isdigit()
            else html.unescape(text.decode("utf-8", "replace")) for kind, text in cells]


def _shared_strings(archive: zipfile.ZipFile, wanted: set[int]) -> dict[int, str]:
    """The shared strings at the ``wanted`` positions, parsed only as far as the last one."""
    part = _part(archive, "xl/sharedStrings.xml")
    if not wanted or part is None:
        return {}
    found: dict[int, str] = {}
    position = 0
    try:
        with archive.open(part) as strings:
            for _event, element in ElementTree.iterparse(strings):
                main = _namespace(element.tag)
                if element.tag != f"{main}si" or main not in _NS_MAINS:
                    continue
                if position in wanted:
                    found[position] = "".join(t.text or "" for t in element.iter(f"{main}t"))
                element.clear()
                position += 1
                if position > max(wanted):
                    break
    except (ElementTree.ParseError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise SpreadsheetRejected("the spreadsheet is damaged (a part of it cannot be unpacked)") from exc
    return found


def _stamp(archive: zipfile.ZipFile) -> tuple[tuple[str, str] | None, str]:
    """The (kind, version) our template wrote into the workbook properties, if present."""
    if _part(archive, "docProps/core.xml") is None:
        return None, ""
    try:
        core = ElementTree.fromstring(_unpacked(archive, "docProps/core.xml"))
    except ElementTree.ParseError:
        return None, ""
    texts = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in core}
    for word in texts.get("keywords", "").replace(",", " ").split():
        parts = word.split(":")
        if len(parts) == 3 and parts[0] == STAMP_PREFIX:
            return (parts[1], parts[2]), texts.get("title", "")
    return None, texts.get("title", "")


# --- csv ----------------------------------------------------------------------------------

def _decode(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Excel's "Unicode text": UTF-16 with its mark
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise SpreadsheetRejected("the file's text is not valid UTF-16: save it as CSV UTF-8 "
                                      "and upload again") from None
    if b"\x00" in data[:4096]:
        raise SpreadsheetRejected("the file is not a spreadsheet (binary data): upload .xlsx or CSV "
                                  "(if it is a text file, save it as CSV UTF-8)")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise SpreadsheetRejected("the CSV file's text encoding is not UTF-8 or Windows-1252")


def _read_csv(data: bytes) -> Sheet:
    if data.count(b"\n") > MAX_ROWS + 1:  # counted before parsing (quoted line breaks aside)
        raise SpreadsheetRejected(TOO_MANY_ROWS)
    text = _decode(data)
    if not text.strip():
        raise SpreadsheetRejected("the file is empty")
    stated = _SEPARATOR_LINE.match(text)
    if stated:  # Excel's "sep=;" first line: it names the separator, and Excel does not show it
        text = text[stated.end():]
        delimiter, first = stated[1], next(csv.reader(io.StringIO(text[:65536], newline=""),
                                                      delimiter=stated[1]), [])
    else:
        delimiter, first = _delimiter(text)
    if len(first) <= 1 and len(text.split("\n", 1)[0]) > 200:
        raise SpreadsheetRejected("the file is not a spreadsheet: no columns found in its first line")
    try:
        values = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise SpreadsheetRejected(f"the CSV file could not be read ({exc})") from exc
    for number, row in enumerate(values, start=1):
        for index, cell in enumerate(row):
            if cell.startswith("="):
                raise SpreadsheetRejected(
                    f"row {number}, column {index + 1} holds a formula: upload values only"
                )
    errors = _error_texts(values) if "#" in text and _ERROR_TEXT_STR.search(text) else {}
    return _sheet(values, "csv", None, "", errors)


DELIMITERS = (",", ";", "\t")
_SEPARATOR_LINE = re.compile(r"\ufeff?sep=([,;\t|])[ \t]*\r?\n", re.IGNORECASE)


def _delimiter(text: str) -> tuple[str, list[str]]:
    """The separator whose first row matches most template headers, and that row. Counting
    characters misleads: the ISARIC headers hold more commas (in their code lists) than a
    semicolon- or tab-separated file has separators. Ties go to the most columns, then to
    the order of ``DELIMITERS``."""
    head = text[:65536]  # the header row; a quoted line break may sit inside a header

    def first_row(delimiter: str) -> list[str]:
        try:
            return next(csv.reader(io.StringIO(head, newline=""), delimiter=delimiter), [])
        except csv.Error:
            return []

    rows = {d: first_row(d) for d in DELIMITERS}
    every = templates().values()

    def score(delimiter: str) -> tuple[int, int]:
        cells = [c for c in rows[delimiter] if c.strip()]
        matched = sum(1 for c in cells if any(t.column_for(c) is not None for t in every))
        return matched, len(cells)

    best = max(DELIMITERS, key=score)  # max keeps the first of equals
    return best, rows[best]


# --- common -------------------------------------------------------------------------------

def _sheet(values: list[list], fmt: str, stamp, title: str,
           errors: dict[tuple[int, int], str] | None = None) -> Sheet:
    """Headers and data rows. ``errors``: Excel error cells by (row, column) index from 0; in
    the rows they become None, listed in ``cell_errors``."""
    error_rows: dict[int, dict[int, str]] = {}
    for (row, column), code in (errors or {}).items():
        error_rows.setdefault(row, {})[column] = code
    header_index = _header_index(values, error_rows)
    if header_index is None:
        raise SpreadsheetRejected("the spreadsheet is empty: it has no header row")
    headers = [str(v).strip() if _filled(v) else "" for v in values[header_index]]
    while headers and not headers[-1]:
        headers.pop()
    width = len(headers)
    rows, cell_errors = [], {}
    for index in range(header_index + 1, len(values)):
        cells = values[index]
        failed = {c: code for c, code in error_rows[index].items() if c < width and headers[c]} \
            if index in error_rows else None  # under no header: only the sheet warning
        if not failed and not any(_filled(v) for v in cells[:width]):
            continue
        cells = list(cells[:width]) + [""] * (width - len(cells))
        if failed:
            for column in failed:
                cells[column] = None
            cell_errors[index + 1] = failed
        # A tuple: once the garbage collector has seen that it holds only values, it stops
        # tracking it (a list of 20,000 rows was walked again by every full collection).
        rows.append((index + 1, tuple(cells)))
    return Sheet(headers=headers, rows=rows, format=fmt, stamp=stamp, title=title,
                 cell_errors=cell_errors,
                 unheaded_columns=_unheaded_columns(values, header_index, headers, error_rows))


def _header_index(values: list[list], error_rows) -> int | None:
    """The header row's index: the first row holding a value or an error cell (in
    ``error_rows``, row indices)."""
    return next((i for i, row in enumerate(values) if i in error_rows or any(_filled(v) for v in row)),
                None)


def _headers_row(values: list[list], error_rows) -> int | None:
    """The row holding the headers, for the hidden check: the header row (the first filled),
    or, when that holds no template header and one of the next few filled rows does (a title
    above the headers), that row. A hidden column holding only its header is then no hidden
    value, and the title row is refused for what it is, by ``layout``."""
    first = _header_index(values, error_rows)
    if first is None or _holds_template_header(values[first]):
        return first
    following = (i for i in range(first + 1, len(values)) if any(_filled(v) for v in values[i]))
    return next((i for i in islice(following, TITLE_ROWS) if _holds_template_header(values[i])), first)


TITLE_ROWS = 5  # filled rows looked at below a first row holding no template header


def _holds_template_header(row: list) -> bool:
    every = templates().values()
    return any(t.column_for(str(v).strip()) is not None for v in row if _filled(v) for t in every)


def _unheaded_columns(values: list[list], header_index: int, headers: list[str],
                      error_rows: dict[int, dict[int, str]]) -> list[int]:
    """Columns below the header row that hold a value (or an error cell) but have no header:
    their values are not read. Only columns without a header are looked at, so a sheet whose
    headers cover its width costs one length per row."""
    body = range(header_index + 1, len(values))
    reach = max((len(values[i]) for i in body), default=0)
    blank = [c for c in range(reach) if c >= len(headers) or not headers[c]]
    if not blank:
        return []
    with_errors = {c for r, cells in error_rows.items() if r > header_index for c in cells}
    return [c for c in blank if c in with_errors
            or any(c < len(values[i]) and _filled(values[i][c]) for i in body)]


def _filled(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def distinctive_matches(headers: list[str]) -> dict[str, int]:
    """Per template, how many headers match a column that only that template has."""
    keys = {normalise_header(h) for h in headers if h}
    all_templates = templates()
    counts = {}
    for kind, template in all_templates.items():
        others = [t for k, t in all_templates.items() if k != kind]
        counts[kind] = sum(
            1 for k in keys if k in template.by_key and not any(k in o.by_key for o in others)
        )
    return counts


def layout(sheet: Sheet, kind: str) -> Layout:
    """Map the sheet's columns onto the template of ``kind``, or refuse the file."""
    template = get_template(kind)
    if sheet.stamp is not None:
        stated_kind, stated_version = sheet.stamp
        if stated_kind in KINDS and stated_kind != kind:
            raise SpreadsheetRejected(
                f"this is the {stated_kind} template, not the {kind} template: choose the "
                f"{stated_kind} upload, or download the {kind} template"
            )
        if stated_version != template.version:
            raise SpreadsheetRejected(
                f"template version {stated_version} of the {kind} template is not supported: "
                f"download the current template ({template.title}) and copy your data into it"
            )
    else:
        _check_title_version(sheet.title, template)
    counts = distinctive_matches(sheet.headers)
    if counts[kind] == 0:
        other = max(counts, key=counts.get)
        if counts[other] > 0:
            raise SpreadsheetRejected(
                f"this looks like the {other} template, not the {kind} template: choose the "
                f"{other} upload, or download the {kind} template"
            )
    columns: list[Column | None] = []
    seen: dict[str, int] = {}
    warnings = []
    header_units: dict[int, str] = {}
    date_orders: dict[int, str] = {}
    found = [template.column_for(h) if h else None for h in sheet.headers]
    splits = _split_headers(template, sheet.headers, found)
    if splits:  # before any other refusal: a split required header is not "missing"
        raise SpreadsheetRejected(_split_headers_refusal(splits, sheet.format))
    for index, header in enumerate(sheet.headers):
        column = found[index]
        if column is None:
            if header:
                warnings.append(_ignored_column_warning(template, index, header))
            columns.append(None)
            continue
        if column.field in seen:
            raise SpreadsheetRejected(
                f"columns {_column_letter(seen[column.field])} and {_column_letter(index)} are both "
                f"'{column.label}': keep one"
            )
        seen[column.field] = index
        columns.append(column)
        unit = _header_unit(column, header, index, warnings)
        if unit is not None:
            header_units[index] = unit
        order = _header_date_order(column, header)
        if order is not None:
            date_orders[index] = order
    if sheet.unheaded_columns:
        warnings.append(_unheaded_warning(sheet.unheaded_columns))
    missing = [c.header for c in template.columns if c.required and c.field not in seen]
    if missing:
        if not seen and sheet.format == "csv" and len(sheet.headers) <= 1 and not sheet.unheaded_columns:
            raise SpreadsheetRejected(
                "the file is not a spreadsheet (no columns found): upload the filled template as "
                ".xlsx or CSV"
            )
        if not seen:
            raise SpreadsheetRejected(
                f"no column of the {template.title} was found in the first row: is this the right "
                "template, with the headers in row 1?"
            )
        raise SpreadsheetRejected(
            "required columns are missing: " + ", ".join(f"'{m}'" for m in missing)
        )
    ignored = [i for i, h in enumerate(sheet.headers) if h and found[i] is None]
    if ignored and all(c.identifier == "patient_number" for c in columns if c is not None):
        raise SpreadsheetRejected(_no_data_column(template, ignored))
    if not sheet.rows:
        raise SpreadsheetRejected("the spreadsheet has headers but no rows of data")
    return Layout(template=template, columns=columns, warnings=warnings, header_units=header_units,
                  date_orders=date_orders)


def _header_unit(column: Column, header: str, index: int, warnings: list[str]) -> str | None:
    """The unit a number column's header names in its own bracket (None: the template's
    header, or no bracket). The file is refused when the bracket names a unit the column does
    not take or codes other than the template's, before any value is read; a bracket that is
    neither is warned, and the column read as under the template's header. The bracket is
    never repeated: a header can hold anything."""
    bracket = header_bracket(header)
    if bracket is None or column.type not in ("integer", "decimal", "code"):
        return None
    if (column.legend is not None and folded(bracket) == folded(column.legend)) \
            or folded(bracket) in harmless_brackets() or column.range_within(bracket):
        return None
    where = f"column {_column_letter(index)} is the template's '{column.label}' column, but its header"
    if column.codes is not None:
        return _header_codes(column, bracket, index, where, warnings)
    unit = column.unit_named(bracket)
    if unit is not None:
        return unit
    if unit_key(bracket) in unit_vocabulary():
        takes = f"values in {' or '.join(column.accepted_units())}" if column.accepted_units() \
            else "a plain number, without a unit"
        raise SpreadsheetRejected(
            f"{where} states a unit this column does not take (it takes {takes}): convert the "
            f"values and name their unit in the header, or use the template's header '{column.header}'")
    unit = f" (in {column.unit})" if column.unit else ""
    warnings.append(_unrecognised_bracket(column, index, f"its values were read as under the "
                                          f"template's header '{column.header}'{unit}"))
    return None


# A date column's bracket stating its day/month order, letters as written (case and spaces aside).
_DATE_ORDER = re.compile(r"^(dd?|mm?)[/.\-](dd?|mm?)[/.\-](yy|yyyy)$")


def _header_date_order(column: Column, header: str) -> str | None:
    """"DMY" or "MDY" when a date column's header states the order of its slash dates
    ("(DD/MM/YYYY)", "(mm/dd/yy)"); None otherwise ("(YYYY-MM-DD)" states no slash order)."""
    bracket = header_bracket(header)
    if bracket is None or column.type != "date":
        return None
    match = _DATE_ORDER.match(folded(bracket))
    if match is None or match[1][0] == match[2][0]:
        return None
    return "DMY" if match[1][0] == "d" else "MDY"


def _header_codes(column: Column, bracket: str, index: int, where: str, warnings: list[str]) -> None:
    """A coded column's bracket: the template's codes in other words pass, other codes refuse
    the file, anything else is warned."""
    codes = column.codes
    assert codes is not None
    agrees = codes.legend_agrees(bracket)
    if agrees:
        return None
    if agrees is not None:
        expected = column.legend or codes.expected or codes.legend()
        raise SpreadsheetRejected(
            f"{where} does not give the template's codes ({expected}): recode its values to the "
            f"template's codes and use the template's header '{column.header}', so that no value "
            "is read under a code it does not mean")
    warnings.append(_unrecognised_bracket(column, index, "its values were read as the "
                                          f"template's codes ({codes.expected or codes.legend()})"))
    return None


def _unrecognised_bracket(column: Column, index: int, how: str) -> str:
    return (f"column {_column_letter(index)} ('{column.header}') has a bracket in its header that "
            f"is neither a unit this column takes nor the template's codes: {how}; check that "
            "this is what its values mean")


# How alike (difflib's ratio) a header must be to a template column's to be called a misspelling.
RESEMBLANCE = 0.85


def _ignored_column_warning(template: Template, index: int, header: str) -> str:
    """A column the template lacks, named by its letter only: its header is never repeated
    (a pasted record or a patient row in the header row puts names, dates of birth and
    hospital numbers there). A header like a template column's says which, in the
    template's words."""
    warning = f"column {_column_letter(index)} is not part of the {template.title} and was ignored"
    like = _resembling(template, header)
    if like is not None:
        warning += f" (its header looks like a misspelling of '{like.label}': check it)"
    return warning


# At most this many pieces of one header split at its commas are joined again (the longest
# code list of a template header has six parts).
MAX_SPLIT = 12


def _split_headers(template: Template, headers: list[str],
                   found: list[Column | None]) -> dict[int, tuple[int, Column]]:
    """Runs of adjacent ignored headers that, joined at a comma, are a template column's header:
    a CSV header holding commas (a code list) written without quotes. {first index: (index
    after the last, the column)}, the longest run from each start, runs not overlapping."""
    runs: dict[int, tuple[int, Column]] = {}
    start = 0
    while start < len(headers):
        run = _split_header_at(template, headers, found, start)
        if run is not None:
            runs[start] = run
        start = run[0] if run is not None else start + 1
    return runs


def _split_header_at(template: Template, headers: list[str], found: list[Column | None],
                     start: int) -> tuple[int, Column] | None:
    def ignored(index: int) -> bool:
        return bool(headers[index]) and found[index] is None

    best, end = None, start + 1
    if not ignored(start):
        return None
    while end < len(headers) and end - start < MAX_SPLIT and ignored(end):
        end += 1
        for glue in (", ", ","):
            column = template.column_for(glue.join(headers[start:end]))
            if column is not None:
                best = (end, column)
                break
    return best


def _split_header(pieces: int, column: Column, fmt: str) -> str:
    """"the template's header '...' split at its comma: <the fix>", in the template's words."""
    commas = "commas" if pieces > 2 else "comma"
    fix = ("in a CSV file a header holding a comma must be in double quotes; quote it, or upload "
           "the filled template as .xlsx") if fmt == "csv" else "put the header in one cell"
    return f"the template's header '{column.header}' split at its {commas}: {fix}"


def _split_headers_refusal(splits: dict[int, tuple[int, Column]], fmt: str) -> str:
    """A header split at its commas is refused, not ignored: in a CSV file its rows hold one
    value for it, so every value after it would be read under the header to its left."""
    return "; ".join(f"{_columns_named(list(range(start, end)))} look like "
                     f"{_split_header(end - start, column, fmt)}" for start, (end, column) in splits.items())


def _no_data_column(template: Template, ignored: list[int]) -> str:
    """Why a sheet whose only template column is the NHS/CHI number is refused: it would import
    nothing (each patient "unchanged"). A hospital-number column is read: it links images.
    Columns named by letter."""
    [number] = [c.header for c in template.columns if c.identifier == "patient_number"]
    verb = "was" if len(ignored) == 1 else "were"
    return (f"no data column of the {template.title} was recognised: only its '{number}' column "
            f"was read, and {_columns_named(ignored)} {verb} ignored: use the template's headers in row 1")


def _columns_named(indices: list[int]) -> str:
    """'column B', 'columns B and C', 'columns C to G' (a run), 'columns B, D and F'."""
    letters = [_column_letter(i) for i in indices]
    if len(letters) == 1:
        return f"column {letters[0]}"
    if len(letters) > 2 and indices == list(range(indices[0], indices[-1] + 1)):
        return f"columns {letters[0]} to {letters[-1]}"
    if len(letters) > 10:
        return f"columns {', '.join(letters[:10])} and {len(letters) - 10} more"
    return f"columns {', '.join(letters[:-1])} and {letters[-1]}"


def _resembling(template: Template, header: str) -> Column | None:
    """The template column whose header (or an alias) the header most resembles, if closely."""
    close = difflib.get_close_matches(normalise_header(header), list(template.by_key), n=1,
                                      cutoff=RESEMBLANCE)
    return template.by_key[close[0]] if close else None


def _unheaded_warning(columns: list[int]) -> str:
    letters = [_column_letter(c) for c in columns]
    shown = ", ".join(letters[:10]) + (f" and {len(letters) - 10} more" if len(letters) > 10 else "")
    if len(letters) == 1:
        return f"column {shown} holds values but has no header: they were not read"
    return f"columns {shown} hold values but have no header: they were not read"


def _check_title_version(title: str, template: Template) -> None:
    """A workbook titled like a known template but of another version is refused."""
    if not title:
        return
    same = normalise_header(_VERSION_IN_TEXT.sub("", title)) == normalise_header(
        _VERSION_IN_TEXT.sub("", template.title)
    )
    match = _VERSION_IN_TEXT.search(title)
    if same and match and match.group(1) != template.version:
        raise SpreadsheetRejected(
            f"template version {match.group(1)} of the {template.kind} template is not supported: "
            f"download the current template ({template.title}) and copy your data into it"
        )
