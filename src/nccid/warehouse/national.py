"""Clinical records in the national database's file format, for researchers' existing programs.

The national bucket held, per patient folder ``{set}/data/<Pseudonym>/``, a
``data_<YYYY-MM-DD>.json`` for a positive-template row and a ``status_<YYYY-MM-DD>.json`` for
a negative-template row (one swab), keyed by the template's column headers without their
code legends (``Sex``, ``Date of admission``, ``SwabDate``; ``data/national_keys.json`` lists
the spellings that differ) plus ``Pseudonym`` and ``SubmittingCentre``, with values as the
template encodes them: codes as the site chose them (``"1"``, ``"D"``), dates as the sheet
asked for them, numbers in the header's unit. ``national_files`` makes those entries from one
record; the catalogue keeps them (column ``national``) and the research export names and
writes them (docs/warehouse.md, "Differences from the national bucket"). Pure library.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib import resources

from nccid.clinical.schema import Column, strip_legend, templates

PREFIXES = {"positive": "data", "negative": "status"}  # ISARIC has no national file


@cache
def _spec() -> dict:
    text = resources.files("nccid.warehouse").joinpath("data/national_keys.json").read_text()
    return json.loads(text)


def national_key(kind: str, column: Column) -> str:
    """The national files' key for a template column: its header without the code legend,
    unless the national files spelt it otherwise."""
    return _spec()[kind].get(column.field) or strip_legend(column.header)


def _sheet_date(kind: str, iso: object) -> str | None:
    """An ISO date as the kind's sheet asked for it; None for anything else."""
    try:
        return date.fromisoformat(str(iso)[:10]).strftime(_spec()["date_formats"][kind])
    except ValueError:
        return None


def _value(column: Column, cleaned: dict, data: dict) -> object:
    """The cell as the template encodes it. A code is read from ``data`` (the code the site
    chose: its ethnicity sub-code, a sex typed 2); everything else from ``cleaned`` (validated,
    numbers in the header's unit, dates as researchers see them: shifted under shift-dates)."""
    if column.type == "code":
        return _code(column, data.get(column.field))
    if column.type == "date":
        return _sheet_date("positive", cleaned.get(column.field))
    return cleaned.get(column.field)


def _code(column: Column, typed: object) -> str | None:
    """What the site typed in a code column, only if it is one of the list's codes, sub-codes or
    words for unknown, or names one; anything else is left out: an older release kept free
    text as typed there (an ethnicity written out with a relative's name)."""
    codes = column.codes
    if typed is None or codes is None:
        return None
    text = str(typed).strip()
    if text in codes.codes or text in codes.subcodes or text.upper() in codes.unknown:
        return text
    named = codes.code_of(text)
    return named if named in codes.codes or named in codes.subcodes else None


def _latest(cleaned: dict, columns: list[Column]) -> str | None:
    days = [str(cleaned[c.field])[:10] for c in columns if c.type == "date" and cleaned.get(c.field)]
    return max(days, default=None)


def _positive(pseudonym: str, site: str, cleaned: dict, data: dict) -> list[dict]:
    columns = [c for c in templates()["positive"].columns if not c.identifier]
    record: dict = {"Pseudonym": pseudonym, "SubmittingCentre": site}
    for column in columns:
        value = _value(column, cleaned, data)
        if value is not None and value != "":
            record[national_key("positive", column)] = value
    return [{"prefix": "data", "date": _latest(cleaned, columns), "record": record}]


def _negative(pseudonym: str, site: str, cleaned: dict, data: dict) -> list[dict]:
    """One status file per swab, as the national bucket had one per sheet row. The date is the
    cleaned one (shifted; a swab whose date was implausible has none and no file); the status
    the code typed."""
    template = templates()["negative"]
    status_column = template.field("swab_status")
    date_key, status_key = (national_key("negative", template.field("swab_date")),
                            national_key("negative", status_column))
    base = {"Pseudonym": pseudonym, "SubmittingCentre": site}
    if cleaned.get("hospital"):
        base[national_key("negative", template.field("hospital"))] = cleaned["hospital"]
    entries = []
    for typed, clean in zip(data.get("swabs", []), cleaned.get("swabs", []), strict=False):
        day = clean.get("date")
        if not day or _sheet_date("negative", day) is None:
            continue
        record = {**base, date_key: _sheet_date("negative", day)}
        status = _code(status_column, typed.get("status"))
        if status is not None:
            record[status_key] = status
        entries.append({"prefix": "status", "date": str(day)[:10], "record": record})
    return sorted(entries, key=lambda e: e["date"])


_BUILDERS = {"positive": _positive, "negative": _negative}


def national_files(kind: str, pseudonym: str, site: str, cleaned: dict, data: dict) -> list[dict]:
    """The national entries of one record: ``[{"prefix": "data"|"status", "date": ISO date of a
    clinical date or None, "record": {...}}]`` (none for ISARIC). ``cleaned`` must already be as
    researchers see it (``DateShift.clinical``); of ``data`` only codes are read, never a date."""
    builder = _BUILDERS.get(kind)
    return builder(pseudonym, site, cleaned or {}, data or {}) if builder else []


def file_names(entries: list[tuple[str, str]]) -> list[str]:
    """``(prefix, date)`` of one patient's files -> their names, ``data_<date>.json``; a name
    taken already (two swabs of one day, two sites' records) gets ``.2``, ``.3`` before
    ``.json``, which leaves the date after the ``_`` and before the first ``.``."""
    seen: dict[str, int] = {}
    names = []
    for prefix, day in entries:
        stem = f"{prefix}_{day}"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.json" if seen[stem] == 1 else f"{stem}.{seen[stem]}.json")
    return names
