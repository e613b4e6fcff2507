"""Filled clinical sheets for synthetic people: for tests, the demo and benchmarks.

``write_sheet(kind, people, path)`` writes the template of ``kind`` (xlsx or csv) with one
realistic row per person (one to three swab rows each for the negative template), values
drawn from the schema's codes (evenly, or as ``weights`` weighs a field's codes) and
plausible ranges. ``errors=N`` plants N row-rejecting errors in distinct rows and returns
where they are.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections.abc import Mapping
from pathlib import Path

from nccid.clinical.schema import Column, get_template
from nccid.synthetic.people import Person, spaced

# Typical values (not the extremes of the plausible range) for the measurements.
TYPICAL = {
    "pack_year_history": (0, 60), "duration_of_symptoms": (1, 21), "respiratory_rate": (12, 36),
    "heart_rate": (55, 130), "fio2": (21, 60), "pao2": (6, 14), "o2_saturation": (82, 99),
    "spo2": (82, 99), "systolic_bp": (90, 170), "diastolic_bp": (50, 100),
    "temperature": (36.0, 39.9), "news2_score": (0, 12), "wcc": (2, 20),
    "lymphocyte_count": (0.3, 3.5), "platelet_count": (100, 450), "crp": (1, 300),
    "d_dimer": (0.2, 8), "fibrinogen": (1.5, 7), "ferritin": (50, 3000), "urea": (2.5, 25),
    "creatinine": (45, 300), "troponin_i": (2, 200), "troponin_t": (3, 100),
    "apache_score": (5, 35), "gcs": (9, 15), "age": (25, 95),
}
PLANTED = ("nhs_number", "date", "number", "code")
# field -> code -> relative weight: how often each code of a field is drawn
Weights = Mapping[str, Mapping[str, float]]


def _value(column: Column, person: Person, rng: random.Random, fmt: str, base: dt.date,
           weights: Weights):
    if column.field == "nhs_number":
        return spaced(person.nhs_number) if rng.random() < 0.3 else person.nhs_number
    if column.field == "hospital_number":
        return person.hospital_number
    if column.field == "hospital":
        return "Royal Synthetic Infirmary"
    if column.field == "age":
        return person.age_on
    if column.field == "sex":
        return 1 if person.sex == "M" else 0
    if column.field == "isaric_4c_score_supplied":
        return None  # filled in from the computed score by the caller when wanted
    if column.codes is not None:
        codes = column.codes.dropdown()
        if column.field in weights:
            chosen = rng.choices(codes, [weights[column.field].get(c, 0) for c in codes])[0]
            return _code(chosen, fmt)
        return _code(rng.choice(codes), fmt)
    if column.type == "date":
        day = base + dt.timedelta(days=rng.randrange(0, 30))
        return day if fmt == "xlsx" else day.strftime("%d/%m/%Y")
    if column.type in ("integer", "decimal"):
        low, high = TYPICAL.get(column.field, (column.min or 0, column.max or 100))
        if column.type == "integer":
            return rng.randint(int(low), int(high))
        return round(rng.uniform(low, high), 1)
    return "text"


def _code(code: str, fmt: str):
    return int(code) if code.isdigit() and fmt == "xlsx" else code


def rows_for(kind: str, people: list[Person], *, fmt: str = "xlsx", seed: int = 1,
             weights: Weights | None = None) -> tuple[list[str], list[list]]:
    """Headers and filled rows (values as a site would type them) for ``people``."""
    template = get_template(kind)
    columns = template.template_columns()
    rng = random.Random(seed)
    rows = []
    for person in people:
        base = dt.date(2020, 3, 1) + dt.timedelta(days=rng.randrange(0, 300))
        repeats = rng.randint(1, 3) if kind == "negative" else 1
        for i in range(repeats):
            row = [_value(c, person, rng, fmt, base + dt.timedelta(days=7 * i), weights or {})
                   for c in columns]
            rows.append(row)
    return [c.header for c in columns], rows


def plant_errors(kind: str, headers: list[str], rows: list[list], count: int, seed: int = 1) -> list[tuple[int, str]]:
    """Spoil ``count`` distinct rows (cycling through error classes); returns (sheet row, header)."""
    template = get_template(kind)
    columns = [template.column_for(h) for h in headers]
    rng = random.Random(seed + 7)
    targets = rng.sample(range(len(rows)), min(count, len(rows)))
    pickers = {
        "nhs_number": lambda c: c.field == "nhs_number",
        "date": lambda c: c.type == "date",
        "number": lambda c: c.type in ("integer", "decimal") and c.field != "isaric_4c_score_supplied",
        "code": lambda c: c.codes is not None and not c.codes.free_text and c.codes.name != "sex",
    }
    where = {}
    for what, pick in pickers.items():
        found = [i for i, c in enumerate(columns) if c is not None and pick(c)]
        if found:
            where[what] = found[0]
    classes = [w for w in PLANTED if w in where]
    planted = []
    for n, index in enumerate(sorted(targets)):
        what = classes[n % len(classes)]
        col = where[what]
        rows[index][col] = {
            "nhs_number": lambda v: str(v).replace(" ", "")[:9] + str((int(str(v)[-1]) + 1) % 10),
            "date": lambda v: "31/02/2020",
            "number": lambda v: "not measured",
            "code": lambda v: "7",
        }[what](rows[index][col])
        planted.append((index + 2, headers[col]))
    return planted


def write_sheet(kind: str, people: list[Person], path: Path, fmt: str = "xlsx", *,
                errors: int = 0, seed: int = 1, weights: Weights | None = None) -> list[tuple[int, str]]:
    """Write a filled sheet; returns the (sheet row, header) of each planted error."""
    headers, rows = rows_for(kind, people, fmt=fmt, seed=seed, weights=weights)
    if kind == "isaric":
        _fill_4c(headers, rows)
    planted = plant_errors(kind, headers, rows, errors, seed) if errors else []
    path = Path(path)
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(headers)
            writer.writerows([["" if v is None else v for v in row] for row in rows])
    elif fmt == "xlsx":
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet(kind.capitalize())
        sheet.append(headers)
        for row in rows:
            sheet.append(row)
        workbook.save(path)
    else:
        raise ValueError("fmt must be 'xlsx' or 'csv'")
    return planted


def _fill_4c(headers: list[str], rows: list[list]) -> None:
    """Supply the correct 4C score, as a site's form would."""
    from nccid.clinical.validation import isaric_4c_score

    template = get_template("isaric")
    columns = [template.column_for(h) for h in headers]
    target = next(i for i, c in enumerate(columns) if c and c.field == "isaric_4c_score_supplied")
    for row in rows:
        cleaned = {}
        for column, value in zip(columns, row, strict=True):
            if column is None or column.identifier or value is None:
                continue
            if column.codes is not None:
                cleaned[column.field] = column.codes.codes.get(str(value))
            else:
                cleaned[column.field] = value
        row[target] = isaric_4c_score(cleaned)
