"""Small builders for the clinical tests: sheets in memory, validated with a real keyring."""

from __future__ import annotations

import io

from openpyxl import Workbook

from nccid.clinical import reader, validation
from nccid.clinical.schema import get_template
from nccid.synthetic.people import people

PEOPLE = people(40, seed=5)


def xlsx_bytes(headers: list, rows: list[list], *, title: str | None = None,
               keywords: str | None = None, build=None) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    if title:
        workbook.properties.title = title
    if keywords:
        workbook.properties.keywords = keywords
    if build:
        build(workbook)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_bytes(headers: list, rows: list[list], encoding: str = "utf-8") -> bytes:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def positive_row(person=None, **values) -> tuple[list[str], list]:
    """Headers of the positive template and one row: the person's identifiers plus ``values``
    given by field name (everything else blank)."""
    template = get_template("positive")
    values = dict(values)
    row = template_row(template, person or PEOPLE[0], values)
    assert not values, f"unknown fields {values}"
    return template.headers, row


def sheet_under_header(field: str, header: str, value) -> bytes:
    """A positive sheet of one row holding ``value`` in ``field``'s column, headed ``header``
    instead of the template's own."""
    headers, row = positive_row(PEOPLE[0], **{field: value})
    headers = list(headers)
    headers[[c.field for c in get_template("positive").template_columns()].index(field)] = header
    return xlsx_bytes(headers, [row])


def template_row(template, person, values: dict) -> list:
    """One row in template column order: the person's identifiers unless ``values`` overrides
    them, then the fields named in ``values`` (taken out of it), everything else blank."""
    row = []
    for column in template.template_columns():
        if column.field == "nhs_number":
            row.append(values.pop("nhs_number", person.nhs_number))
        elif column.field == "hospital_number":
            row.append(values.pop("hospital_number", person.hospital_number))
        else:
            row.append(values.pop(column.field, None))
    return row


def sheet_of(kind: str, rows_by_field: list[dict], people_list=None) -> bytes:
    template = get_template(kind)
    people_list = people_list or PEOPLE
    rows = []
    for person, values in zip(people_list, rows_by_field, strict=False):
        rows.append(template_row(template, person, dict(values)))
    return xlsx_bytes(template.headers, rows)


def run(data: bytes, kind: str = "positive", keyring=None, **site) -> validation.Result:
    from nccid.identity.keys import Keyring

    keyring = keyring or Keyring(b"t" * 32)
    sheet = reader.read_bytes(data)
    layout = reader.layout(sheet, kind)
    return validation.validate(sheet, layout, validation.SiteRules("RTEST", **site), keyring)


def one(field: str, value, kind: str = "positive", **site):
    """Validate one row with one value set; returns (result, problems for that row)."""
    headers, row = positive_row(**{field: value})
    result = run(xlsx_bytes(headers, [row]), kind, **site)
    return result, result.problems
