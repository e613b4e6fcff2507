"""Write a blank template (xlsx or csv) from the schema, looking like the sheet sites know.

The xlsx has the headers exactly as listed, a frozen header row, drop-downs for coded
fields, an input hint on every column and a version stamp (workbook title and keywords, and
a visible "About" sheet). No hidden sheets: uploads with hidden sheets are refused. Always
generated fresh from the schema, never by round-tripping a site's file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from .reader import STAMP_PREFIX
from .schema import Column, Template, get_template

LAST_ROW = 20001  # validations cover this many data rows


def stamp_keywords(template: Template) -> str:
    return f"{STAMP_PREFIX}:{template.kind}:{template.version}"


def _validation(column: Column, letter: str) -> DataValidation:
    hint = column.input_hint()[:255]
    if column.codes is not None:
        options = column.codes.dropdown()
        validation = DataValidation(
            type="list", formula1='"' + ",".join(options) + '"', allow_blank=True,
            # A warning, not a stop: sites also type M/F, lab text or ethnicity descriptions.
            errorStyle="warning", showErrorMessage=True,
            errorTitle="Not a listed code", error=f"Expected one of: {column.codes.legend()}"[:255],
        )
    else:
        validation = DataValidation(allow_blank=True)
    validation.promptTitle = column.label[:32]
    validation.prompt = hint
    validation.showInputMessage = True
    validation.add(f"{letter}2:{letter}{LAST_ROW}")
    return validation


def build_workbook(kind: str) -> Workbook:
    template = get_template(kind)
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = kind.capitalize()
    header_fill = PatternFill("solid", fgColor="DDEBF7")
    for index, column in enumerate(template.template_columns(), start=1):
        cell = sheet.cell(row=1, column=index, value=column.header)
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = max(14, min(40, len(column.label) + 4))
        if column.type == "date":
            sheet.column_dimensions[letter].number_format = "yyyy-mm-dd"
        elif column.identifier:  # Text: a General cell turns 00123456 into the number 123456
            sheet.column_dimensions[letter].number_format = "@"
        sheet.add_data_validation(_validation(column, letter))
    sheet.freeze_panes = "A2"
    sheet.row_dimensions[1].height = 60

    about = workbook.create_sheet("About")
    lines = [
        template.title,
        f"Template version {template.version} ({stamp_keywords(template)})",
        "Fill in the first sheet, one row per " + ("patient." if template.one_row_per_patient else "swab."),
        "Do not rename, merge or hide anything; values only (no formulas).",
        "Dates: YYYY-MM-DD, a date cell, your site's declared format (DD/MM/YYYY by default), or "
        "with the month's name (13 Jul 2020). A two-digit year is 20xx; a time or time zone after "
        "a date is ignored (the date is kept as written).",
        "NHS/CHI and hospital numbers: their columns are Text, so leading zeros are kept; keep them "
        "Text when pasting (paste values into the template, or format your own columns as Text).",
        "",
        "Column / what to enter",
    ]
    lines += [f"{c.header}: {c.input_hint()}" for c in template.template_columns()]
    for row, line in enumerate(lines, start=1):
        about.cell(row=row, column=1, value=line)
    about["A1"].font = Font(bold=True, size=14)
    about.column_dimensions["A"].width = 120

    props = workbook.properties
    props.title = template.title
    props.subject = f"nccid {kind} clinical data template"
    props.keywords = stamp_keywords(template)
    props.creator = "nccid"
    props.version = template.version
    return workbook


def write_template(kind: str, path: Path) -> Path:
    """Write the blank template; the format follows the extension (.xlsx or .csv)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        path.write_text(template_csv(kind), encoding="utf-8-sig")
    elif path.suffix.lower() == ".xlsx":
        build_workbook(kind).save(path)
    else:
        raise ValueError(f"{path.name}: the template can be written as .xlsx or .csv")
    return path


def template_csv(kind: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(get_template(kind).headers)
    return buffer.getvalue()
