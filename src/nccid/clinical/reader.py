"""Read a clinical spreadsheet (xlsx or csv) into headers and numbered rows. Pure: no Django.

Everything that makes a file unusable as a whole is refused here, with one clear message:
too large (checked before any parsing), not a spreadsheet, empty, formulas, merged cells,
hidden sheets, values in hidden rows or columns, wrong template, unknown template version,
missing required columns. The structural checks of an xlsx read its zip XML directly, which
is fast; cell values are read with python-calamine. Messages name rows and columns, never a cell's value.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

from python_calamine import CalamineWorkbook

from nccid.identity.numbers import looks_like_patient_number

from .schema import KINDS, Column, Template, get_template, normalise_header, templates

MAX_BYTES = 50 * 1024 * 1024
MAX_UNCOMPRESSED = 512 * 1024 * 1024  # a zip that inflates beyond this is refused
# The reader builds the sheet's whole used range: a single cell far away (XFD1048576) would
# make it set aside hundreds of gigabytes. A cell beyond these is refused before reading.
MAX_COLUMNS = 702       # column ZZ: the templates have fewer than 100 columns
MAX_ROWS = 99_999       # rows: split bigger sheets
TOO_MANY_ROWS = f"the file has more than {MAX_ROWS:,} rows: split it into smaller files"
# A row or cell reference (` r="…"`, a literal the regex engine finds fast) of six digits or
# three letters.
_FAR_CELL = re.compile(rb' r="(?:[A-Z]{0,2}[0-9]{6}|[A-Z]{3})')
STAMP_PREFIX = "nccid-template"  # keywords of our templates: "nccid-template:positive:1.5"

_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_FORMULA = re.compile(rb"<(?:\w+:)?f[\s>/]")
_MERGE = re.compile(rb"<(?:\w+:)?mergeCell\s[^>]*ref=\"([A-Z0-9:]+)\"")
# A hidden row: <row r="5" ... hidden="1">; hidden columns: <col min="3" max="4" ... hidden="1"/>.
_HIDDEN_ROW = re.compile(rb"<(?:\w+:)?row(?=\s)(?=[^>]*\shidden=\"(?:1|true)\")[^>]*\sr=\"(\d+)\"")
_HIDDEN_COLUMNS = re.compile(rb"<(?:\w+:)?col(?=\s)(?=[^>]*\shidden=\"(?:1|true)\")"
                             rb"(?=[^>]*\smin=\"(\d+)\")[^>]*\smax=\"(\d+)\"")
_VERSION_IN_TEXT = re.compile(r"v(?:ersion)?\s*(\d+(?:\.\d+)*)", re.IGNORECASE)


class SpreadsheetRejected(ValueError):
    """The file as a whole cannot be used; the message says why and what to do."""


@dataclass
class Sheet:
    headers: list[str]
    rows: list[tuple[int, list]]  # (1-based sheet row number, cell values padded to headers)
    format: str  # "xlsx" | "csv"
    stamp: tuple[str, str] | None = None  # (kind, version) stated by the workbook, if any
    title: str = ""


@dataclass
class Layout:
    """How a sheet's columns map onto a template."""

    template: Template
    columns: list[Column | None]  # per sheet column; None = not in the template (ignored)
    warnings: list[str] = field(default_factory=list)


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
        raise SpreadsheetRejected(
            "this is an old Excel (.xls) or other Office file: save it as .xlsx or CSV and upload again"
        )
    return _read_csv(data)


# --- xlsx ---------------------------------------------------------------------------------

def _read_xlsx(data: bytes) -> Sheet:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise SpreadsheetRejected("the file is not a spreadsheet (a damaged or non-Excel zip file)") from exc
    if "xl/workbook.xml" not in names:
        raise SpreadsheetRejected("the file is not a spreadsheet: upload the filled template as .xlsx or CSV")
    if sum(i.file_size for i in archive.infolist()) > MAX_UNCOMPRESSED:
        raise SpreadsheetRejected("the spreadsheet is too large once unpacked: split it into smaller files")
    sheet_path, sheet_name = _first_sheet(archive)
    xml = _unpacked(archive, sheet_path)
    if _FAR_CELL.search(xml):
        raise SpreadsheetRejected(
            f"the first sheet reaches beyond column {_column_letter(MAX_COLUMNS - 1)} or row "
            f"{MAX_ROWS:,}: delete what lies beyond the template's columns and split the rows "
            "into smaller files")
    # The regular expressions are slow on a large sheet: a plain substring test rules most out.
    if (b"<f" in xml or b":f" in xml) and _FORMULA.search(xml):
        raise SpreadsheetRejected(
            f"sheet {sheet_name} contains formulas: paste the values only (Paste Special > Values) "
            "and upload again"
        )
    merged = _MERGE.findall(xml) if b"mergeCell" in xml else []
    if merged:
        raise SpreadsheetRejected(
            f"sheet {sheet_name} has merged cells ({_some(m.decode() for m in merged)}): "
            "unmerge them, one value per cell"
        )
    stamp, title = _stamp(archive, names)
    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
        values = workbook.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except Exception as exc:  # calamine raises several types for damaged files
        raise SpreadsheetRejected("the spreadsheet could not be read (it may be damaged)") from exc
    _refuse_hidden_values(xml, values, sheet_name)
    return _sheet(values, "xlsx", stamp, title)


def _refuse_hidden_values(xml: bytes, values: list[list], sheet_name: str) -> None:
    """Values in hidden rows or columns are refused, like hidden sheets: the site would send
    data it cannot see (a hidden column of names, say). Hidden empty rows and columns (Excel's
    way of tidying the unused part of a sheet) are fine. Named by row number and letter."""
    if b"hidden=" not in xml:  # the common case, decided without a regular expression
        return
    rows = [int(r) for r in _HIDDEN_ROW.findall(xml)]
    rows = [r for r in rows if r <= len(values) and any(_filled(c) for c in values[r - 1])]
    columns = []
    for low, high in _HIDDEN_COLUMNS.findall(xml):
        low, high = int(low), min(int(high), max((len(row) for row in values), default=0))
        used = [c for c in range(low, high + 1)
                if any(c <= len(row) and _filled(row[c - 1]) for row in values)]
        columns += [_column_letter(c - 1) for c in used]
    problems = []
    if rows:
        problems.append("hidden rows holding values (" + _some(str(r) for r in rows) + ")")
    if columns:
        problems.append("hidden columns holding values (" + _some(columns) + ")")
    if problems:
        raise SpreadsheetRejected(
            f"sheet {sheet_name} has {' and '.join(problems)}: unhide them, check what they "
            "hold, and upload again")


def _some(items) -> str:
    items = list(items)
    return ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")


def _unpacked(archive: zipfile.ZipFile, name: str) -> bytes:
    """One part of the xlsx, or a refusal if it cannot be unpacked (a damaged entry)."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as exc:
        raise SpreadsheetRejected("the spreadsheet is damaged (a part of it cannot be unpacked)") from exc


def _first_sheet(archive: zipfile.ZipFile) -> tuple[str, str]:
    """The first sheet's path in the archive, and how messages name it. Sheets are named by
    position, never by their name: a sheet's name may be anything (a patient's, say)."""
    try:
        workbook = ElementTree.fromstring(_unpacked(archive, "xl/workbook.xml"))
        rels = ElementTree.fromstring(_unpacked(archive, "xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError) as exc:
        raise SpreadsheetRejected("the spreadsheet's structure is damaged") from exc
    sheets = workbook.findall(f"{_NS_MAIN}sheets/{_NS_MAIN}sheet")
    if not sheets:
        raise SpreadsheetRejected("the spreadsheet has no sheets")
    hidden = [str(n) for n, s in enumerate(sheets, 1) if s.get("state") in ("hidden", "veryHidden")]
    if hidden:
        raise SpreadsheetRejected(
            f"the spreadsheet has hidden sheets (sheet {', '.join(hidden)} in order): delete them "
            "(or unhide and check them) and upload again"
        )
    targets = {r.get("Id"): r.get("Target", "") for r in rels.findall(f"{_NS_PKG_REL}Relationship")}
    target = targets.get(sheets[0].get(f"{_NS_REL}id"), "")
    path = target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
    if path not in archive.namelist():
        raise SpreadsheetRejected("the spreadsheet's first sheet is missing")
    return path, "1"


def _stamp(archive: zipfile.ZipFile, names: set[str]) -> tuple[tuple[str, str] | None, str]:
    """The (kind, version) our template wrote into the workbook properties, if present."""
    if "docProps/core.xml" not in names:
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
    if b"\x00" in data[:4096]:
        raise SpreadsheetRejected("the file is not a spreadsheet (binary data): upload .xlsx or CSV")
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
    return _sheet(values, "csv", None, "")


DELIMITERS = (",", ";", "\t")


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

def _sheet(values: list[list], fmt: str, stamp, title: str) -> Sheet:
    header_index = next((i for i, row in enumerate(values) if any(_filled(v) for v in row)), None)
    if header_index is None:
        raise SpreadsheetRejected("the spreadsheet is empty: it has no header row")
    headers = [str(v).strip() if _filled(v) else "" for v in values[header_index]]
    while headers and not headers[-1]:
        headers.pop()
    width = len(headers)
    rows = []
    for index in range(header_index + 1, len(values)):
        cells = values[index]
        if not any(_filled(v) for v in cells[:width]):
            continue
        cells = list(cells[:width]) + [""] * (width - len(cells))
        rows.append((index + 1, cells))
    return Sheet(headers=headers, rows=rows, format=fmt, stamp=stamp, title=title)


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
    for index, header in enumerate(sheet.headers):
        column = template.column_for(header) if header else None
        if column is None:
            if header:
                shown = "(a header that looks like an NHS/CHI number)" if looks_like_patient_number(header) \
                    else f"'{header}'"
                warnings.append(
                    f"column {_column_letter(index)} {shown} is not part of the {template.title} "
                    "and was ignored"
                )
            columns.append(None)
            continue
        if column.field in seen:
            raise SpreadsheetRejected(
                f"columns {_column_letter(seen[column.field])} and {_column_letter(index)} are both "
                f"'{column.label}': keep one"
            )
        seen[column.field] = index
        columns.append(column)
    missing = [c.header for c in template.columns if c.required and c.field not in seen]
    if missing:
        if not seen and sheet.format == "csv" and len(sheet.headers) <= 1:
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
    if not sheet.rows:
        raise SpreadsheetRejected("the spreadsheet has headers but no rows of data")
    return Layout(template=template, columns=columns, warnings=warnings)


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
