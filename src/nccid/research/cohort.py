"""Cohorts: a filter over the catalogue, compiled to parameterised DuckDB SQL.

Every query is scoped to the sets the user may see (``scope_for``, the one place that
decides it): the training set by default, never the validation set. User values only ever
travel as query parameters; field names are checked against the catalogue's columns.
"""

from __future__ import annotations

import json
import math
import re
import threading
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from .source import Source, default_source

# Sets that may ever be handed out to a researcher; the validation set is held out for good.
HANDED_OUT_SETS = ("training",)
COVID_STATUSES = ("positive", "negative", "unknown")
SEXES = {"male": "Male", "m": "Male", "female": "Female", "f": "Female", "unknown": "Unknown"}
# Folder names that are not also a modality code (CT is both); ``other`` holds the objects
# without a Modality (``warehouse.layout.modality_folder``).
FOLDERS = ("xray", "mri", "other")
OPERATORS = ("!=", ">=", "<=", "=", ">", "<")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RESERVED = {"pseudonym", "site", "kind", "set_name", "updated_at", "cleaned", "national"}
MAX_DAYS = 36_500  # a century either side of a clinical date is as wide as a window gets
MAX_AGE = 150  # years; a bigger bound is a typing error, and past 2**127 DuckDB cannot bind it
WITHIN_KEYS = ("field", "days", "days_before", "days_after")
DEFAULT_WITHIN_FIELD = "date_of_positive_covid_swab"
# A study's cohort names a handful of clinical criteria; 50 leaves room for a range (two
# conditions) on each of 25 fields. The bound keeps every query's SQL, and the filter the
# audit log records with each query, small whatever a client sends.
MAX_CONDITIONS = 50
# Criteria given as one value or a list of them: an empty value among them is refused
# however it comes (from the API, ``--modality ""`` or ``open(modality="")``), never read
# as "any" by one door and as "none" by another.
LIST_CRITERIA = ("covid_status", "modality", "site", "sex", "ethnicity")


class CohortError(ValueError):
    """A filter the catalogue cannot answer; the message says which part and why."""


class QueryLimitError(CohortError):
    """A research query stopped by the installation's time or memory limit (docs/research.md)."""


class ScopeError(PermissionError):
    """The user may not query research data (role, or no set granted)."""


@dataclass(frozen=True)
class ClinicalCondition:
    field: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> ClinicalCondition:
        """``itu_admission=Yes``, ``age>=60``, ``date_of_death<2020-06-01``."""
        for op in OPERATORS:
            name, sep, value = text.partition(op)
            if sep and name.strip():
                return cls(name.strip().lower(), op, value.strip())
        raise CohortError(f"clinical condition {text!r}: write FIELD=VALUE (or !=, <, <=, >, >=)")


@dataclass(frozen=True)
class RelativeDate:
    """Images taken from ``days_before`` before to ``days_after`` after a clinical date."""

    field: str = DEFAULT_WITHIN_FIELD
    days_before: int = 7
    days_after: int = 7


@dataclass(frozen=True)
class CohortFilter:
    covid_status: tuple[str, ...] = ()
    modality: tuple[str, ...] = ()
    site: tuple[str, ...] = ()
    study_date_from: date | None = None
    study_date_to: date | None = None
    age_min: int | None = None
    age_max: int | None = None
    sex: tuple[str, ...] = ()
    ethnicity: tuple[str, ...] = ()
    clinical: tuple[ClinicalCondition, ...] = ()
    within: RelativeDate | None = None

    def __post_init__(self) -> None:
        if len(self.clinical) > MAX_CONDITIONS:
            raise CohortError(f"clinical: at most {MAX_CONDITIONS} conditions, "
                              f"got {len(self.clinical)}")
        bad = [s for s in self.covid_status if s not in COVID_STATUSES]
        if bad:
            raise CohortError(f"covid status {bad[0]!r}: use {', '.join(COVID_STATUSES)}")
        for name in ("age_min", "age_max"):
            age = getattr(self, name)
            if age is not None and not 0 <= age <= MAX_AGE:
                raise CohortError(f"{name}: {age} is out of range (0-{MAX_AGE} years)")
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise CohortError(f"age range {self.age_min}-{self.age_max} is empty")
        if (self.study_date_from and self.study_date_to
                and self.study_date_from > self.study_date_to):
            raise CohortError("study date range: --from is after --to")
        if self.within and (self.within.days_before < 0 or self.within.days_after < 0):
            raise CohortError("days before/after a clinical date cannot be negative")
        if self.within and max(self.within.days_before, self.within.days_after) > MAX_DAYS:
            raise CohortError(f"days before/after a clinical date: at most {MAX_DAYS}")

    @property
    def has_image_criteria(self) -> bool:
        return bool(self.modality or self.study_date_from or self.study_date_to or self.within)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (what the audit log records)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value in (None, ()):
                continue
            if isinstance(value, date):
                value = value.isoformat()
            elif f.name == "clinical":
                value = [f"{c.field}{c.op}{c.value}" for c in value]
            elif f.name == "within":
                value = asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CohortFilter:
        """Build from JSON (CLI ``--filter-json``, the API). Unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CohortError(f"unknown filter field(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if value is None or value == [] or (value == "" and name not in LIST_CRITERIA):
                continue
            if name in ("study_date_from", "study_date_to"):
                kwargs[name] = _parse_date(name, value)
            elif name in ("age_min", "age_max"):
                kwargs[name] = _parse_int(name, value)
            elif name == "clinical":
                items = [value] if isinstance(value, str) else value
                if isinstance(items, dict):
                    items = [f"{k}={v}" for k, v in items.items()]
                kwargs[name] = tuple(ClinicalCondition.parse(str(i)) for i in items)
            elif name == "within":
                kwargs[name] = _parse_within(value)
            else:
                items = [value] if isinstance(value, str) else list(value)
                if any(not str(i).strip() for i in items):  # matches no one, silently
                    raise CohortError(f"{name}: an empty value matches nothing; "
                                      f"leave {name} out to take any")
                kwargs[name] = tuple(_normalise(name, str(i)) for i in items)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> CohortFilter:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CohortError(f"filter JSON: {exc.msg} at line {exc.lineno}") from exc
        if not isinstance(data, dict):
            raise CohortError("filter JSON must be an object")
        return cls.from_dict(data)


def _normalise(name: str, value: str) -> str:
    value = value.strip()
    if name == "covid_status":
        return value.lower()
    if name == "sex":
        if value.lower() not in SEXES:
            raise CohortError(f"sex {value!r}: use Male, Female or Unknown")
        return SEXES[value.lower()]
    if name == "modality":
        return value.lower() if value.lower() in FOLDERS else value.upper()
    if name == "site":
        return value.upper()
    if name == "ethnicity":  # a group no patient has would match no one, silently
        groups = field_values()["ethnicity"]
        if value.lower() not in {g.lower() for g in groups}:
            raise CohortError(f"ethnicity {_shown(value)}: use one of {', '.join(groups)}")
    return value


def _parse_date(name: str, value: Any) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise CohortError(f"{name}: {value!r} is not a date (use YYYY-MM-DD)") from exc


def _parse_int(name: str, value: Any) -> int:
    """A whole number from JSON or text: 7, "7" or 7.0; never a bool, a fraction or infinity."""
    problem = CohortError(f"{name}: {_shown(value)} is not a whole number")
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise problem  # int() would read true as 1 and cut 2.5 to 2
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise problem from exc


def _shown(value: Any) -> str:
    """A value for a message, cut short: a huge number echoed whole would swamp it."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_within(value: Any) -> RelativeDate:
    if isinstance(value, RelativeDate):
        return value
    if not isinstance(value, dict):
        raise CohortError("within: give {field, days_before, days_after} or {field, days}")
    unknown = sorted(set(value) - set(WITHIN_KEYS))
    if unknown:  # a misspelt day count would otherwise fall back to 7 days unnoticed
        raise CohortError(f"within: unknown key(s) {', '.join(map(repr, unknown))}: "
                          f"use {', '.join(WITHIN_KEYS)}")

    def day_count(key: str) -> int:
        name = key if value.get(key) is not None else "days"  # `days` sets both sides
        given = value.get(name)
        return 7 if given is None else _parse_day_count(f"within.{name}", given)

    name = value.get("field")
    return RelativeDate(DEFAULT_WITHIN_FIELD if name is None else str(name).lower(),
                        day_count("days_before"), day_count("days_after"))


def _parse_day_count(name: str, value: Any) -> int:
    # Bounded here, so an absurd count is the user's error, not an overflow inside the query.
    days = _parse_int(name, value)
    if not 0 <= days <= MAX_DAYS:
        raise CohortError(f"{name}: {days} is out of range (0-{MAX_DAYS} days)")
    return days


# ---------------------------------------------------------------- scope (the one place)

def scope_for(user: Any) -> tuple[str, ...]:
    """The sets ``user`` may query or export: their grant, intersected with what is ever handed out."""
    if user is None or not getattr(user, "is_researcher", False):
        raise ScopeError("only researchers and administrators may query research data")
    sets = tuple(s for s in user.allowed_sets() if s in HANDED_OUT_SETS)
    if not sets:
        raise ScopeError(f"user {user.username} has no research set granted")
    return sets


def _check_sets(sets: tuple[str, ...]) -> None:
    if not sets or any(s not in HANDED_OUT_SETS for s in sets):
        raise ScopeError("a cohort can only cover sets handed out to researchers")


# ---------------------------------------------------------------- compilation

@dataclass
class CompiledCohort:
    """CTEs ``pat`` (patients), ``img`` (images), ``cp`` (cohort patients) and their parameters."""

    ctes: str
    params: dict[str, Any] = field(default_factory=dict)

    def sql(self, select: str) -> str:
        return f"WITH {self.ctes}\n{select}"


def clinical_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("DESCRIBE SELECT * FROM clinical").fetchall()
    return {r[0] for r in rows} - _RESERVED


@cache
def known_fields() -> frozenset[str]:
    """The fields cleaned records hold: the clinical templates' (identifiers are never
    cleaned; a column the cleaner folds into others, as the negative template's swab_date,
    counts as those) and the derived ones the warehouse flattens (``isaric_4c_score`` ...)."""
    from nccid.clinical.schema import templates
    from nccid.warehouse.catalogue_schema import clinical_columns as flattened

    return frozenset({name for t in templates().values() for name in t.cleaned_fields()}
                     | set(flattened()))


@cache
def folded_fields() -> dict[str, str]:
    """Each template column no cleaned record holds -> what to say instead (the fields the
    cleaner folds it into, read from the template)."""
    from nccid.clinical.schema import templates

    return {name: (f"the {t.kind} template's rows are folded into one record per patient, "
                   f"every row in its {t.rows_cleaned_as} list; use {' or '.join(instead)}")
            for t in templates().values() for name, instead in t.cleaned_as_of().items()}


# What a field holds, read from the data that defines it: a template column's type, or the
# DuckDB type the catalogue flattens a derived field to. Any other field holds text.
_KIND_OF_TYPE = {"integer": "number", "decimal": "number", "date": "date",
                 "INTEGER": "number", "DOUBLE": "number", "DATE": "date"}


@cache
def field_kinds() -> dict[str, str]:
    """Each known field -> ``number``, ``date`` or ``text`` (codes, yes/no, free text)."""
    from nccid.clinical.schema import templates
    from nccid.warehouse.catalogue_schema import clinical_columns as flattened

    types = {c.field: c.type for t in templates().values() for c in t.columns}
    types.update(flattened())  # a derived field's type is the catalogue's
    return {name: _KIND_OF_TYPE.get(types.get(name, ""), "text") for name in known_fields()}


def fields_of_kind(*kinds: str) -> list[str]:
    return sorted(name for name, kind in field_kinds().items() if kind in kinds)


def _field_expr(name: str, columns: set[str], params: dict[str, Any], key: str) -> str:
    """A typed column when the catalogue flattens the field, else the cleaned JSON."""
    known = columns | known_fields()
    listed = f"known fields: {', '.join(sorted(known))}"
    if not _FIELD_NAME.match(name) or name in _RESERVED:
        raise CohortError(f"clinical field {name!r} is not a cleaned clinical field name; {listed}")
    if name in folded_fields():  # a template's column, but no cleaned record holds it
        raise CohortError(f"clinical field {name!r} is not kept in cleaned records: "
                          f"{folded_fields()[name]}")
    if name not in known:  # a misspelt field would match no one, silently
        raise CohortError(f"clinical field {name!r} is not a clinical field; {listed}")
    if name in columns:
        return f'c."{name}"'
    params[key] = "$." + name
    return f"json_extract_string(c.cleaned, ${key})"


@cache
def _boolean_sides() -> dict[str, list[str]]:
    """``true``/``false`` (what a derived field stores) -> the spellings of that side."""
    text = resources.files("nccid.research").joinpath("data/clinical_values.toml").read_text()
    return tomllib.loads(text)["booleans"]


@cache
def boolean_spellings() -> dict[str, list[str]]:
    """Each lower-cased yes/no word -> every spelling of its side (``data/clinical_values.toml``)."""
    return {word: list(side) for side in _boolean_sides().values() for word in side}


@cache
def field_values() -> dict[str, tuple[str, ...]]:
    """Each field whose values are known -> them, as cleaned records hold them: a coded
    column's labels (codes are cleaned to their label) in every template that has it, and
    ``true``/``false`` for a field the catalogue flattens as a boolean. Free text is open."""
    from nccid.clinical.schema import templates
    from nccid.warehouse.catalogue_schema import clinical_columns as flattened

    lists: dict[str, list] = {}
    for t in templates().values():
        for c in t.columns:
            for name in () if c.identifier else c.cleaned_as or (c.field,):
                lists.setdefault(name, []).append(c.codes)
    types = flattened()
    values = {name: _labels(codes) for name, codes in lists.items()
              if all(codes) and types.get(name, "VARCHAR") == "VARCHAR"}
    values.update({name: tuple(_boolean_sides()) for name, kind in types.items()
                   if kind == "BOOLEAN"})
    return values


def _labels(code_lists: list) -> tuple[str, ...]:
    labels = [label for codes in code_lists for label in codes.codes.values()]
    from nccid.clinical.validation import UNKNOWN_LABEL

    labels += [UNKNOWN_LABEL for codes in code_lists if codes.unknown]
    return tuple(dict.fromkeys(labels))


def _other_spellings(values: tuple[str, ...]) -> list[str]:
    """The yes/no words an ``=`` test also reads as one of ``values`` (true for Yes)."""
    held = {v.lower() for v in values}
    return sorted({word for word, side in boolean_spellings().items() if held & set(side)} - held)


def _finite_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _equality_sql(cond: ClinicalCondition, expr: str, params: dict[str, Any], key: str) -> str:
    """``=``/``!=`` on a field of codes or text: yes/no words as any spelling of their side
    (Yes, true), a number as a number (a catalogue column no template types), the rest as
    case-blind text."""
    number = _finite_number(cond.value)
    if number is not None:
        params[key] = number
        return f"TRY_CAST({expr} AS DOUBLE) {cond.op} ${key}"
    spellings = boolean_spellings().get(cond.value.lower())
    if spellings:
        params[key] = spellings
        test = f"list_contains(${key}, lower(CAST({expr} AS VARCHAR)))"
        return test if cond.op == "=" else f"NOT {test}"
    params[key] = cond.value.lower()
    return f"lower(CAST({expr} AS VARCHAR)) {cond.op} ${key}"


def _condition_sql(cond: ClinicalCondition, expr: str, params: dict[str, Any], key: str) -> str:
    """``=``/``!=`` on any field; an order (``<`` ...) only on a number or date field. The
    value must be one the field can hold (a number, a date, one of its labels): TRY_CAST, or
    text no record holds, would make any other test NULL or false, an empty cohort."""
    kind = field_kinds().get(cond.field, "text")
    written = f"clinical condition {_shown(f'{cond.field}{cond.op}{cond.value}')}"
    if kind == "number":
        number = _finite_number(cond.value)
        if number is None:
            raise CohortError(f"{written}: {cond.field} is a number; compare it with a number, "
                              f"not {_shown(cond.value)}")
        params[key] = number
        return f"TRY_CAST({expr} AS DOUBLE) {cond.op} ${key}"
    if kind == "date":
        try:
            params[key] = date.fromisoformat(cond.value)
        except ValueError as exc:
            raise CohortError(f"{written}: {cond.field} is a date; compare it with a "
                              f"YYYY-MM-DD date, not {_shown(cond.value)}") from exc
        return f"TRY_CAST({expr} AS DATE) {cond.op} ${key}"
    if cond.op not in ("=", "!="):
        raise CohortError(f"{written}: {cond.op} compares numbers or dates and {cond.field} "
                          f"holds neither (use = or !=); number and date fields: "
                          f"{', '.join(fields_of_kind('number', 'date'))}")
    _check_held(cond, written)
    return _equality_sql(cond, expr, params, key)


def _check_held(cond: ClinicalCondition, written: str) -> None:
    """A coded or yes/no field is compared with a value its records can hold."""
    values = field_values().get(cond.field)
    if values is None:
        return  # free text, or a column only the catalogue has: any value may be held
    others = _other_spellings(values)
    if cond.value.lower() in {v.lower() for v in values} | set(others):
        return
    also = f" (also written {', '.join(others)})" if others else ""
    raise CohortError(f"{written}: {cond.field} holds {', '.join(values)}{also}; compare it "
                      f"with one of them, not {_shown(cond.value)}")


def _clinical_sql(conditions: tuple[ClinicalCondition, ...], columns: set[str],
                  params: dict[str, Any]) -> str:
    """Patients with, for each condition, a clinical record meeting it (records may differ),
    in one grouped pass: one EXISTS per condition made DuckDB's planning time grow with the
    square of their number (400 conditions: 79 s). A field is read once however often named."""
    exprs: dict[str, str] = {}
    tests = []
    for n, cond in enumerate(conditions):
        if cond.field not in exprs:
            exprs[cond.field] = _field_expr(cond.field, columns, params, f"cf{len(exprs)}")
        tests.append(f"bool_or({_condition_sql(cond, exprs[cond.field], params, f'cv{n}')})")
    return ("p.pseudonym IN (SELECT c.pseudonym FROM clinical c"
            " WHERE list_contains($sets, c.set_name) GROUP BY c.pseudonym"
            f" HAVING {' AND '.join(tests)})")


def check_named_codes(flt: CohortFilter, con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a site no record in the catalogue names, and a modality code that neither the
    standard defines nor an image holds: a typing error (``--site RXX1``, ``--modality XR``)
    would otherwise match no one, silently, and be audited as a query. A real site or a
    modality with no data yet still gives an honest empty cohort only if the standard or the
    catalogue knows it; the message names what the catalogue holds."""
    from nccid.modalities import dicom_modality_codes

    if flt.site:
        held = _held(con, "SELECT DISTINCT s FROM (SELECT unnest(sites) AS s FROM patients)")
        unknown = [site for site in flt.site if site not in held]
        if unknown:
            raise CohortError(f"site {_shown(unknown[0])}: no record in the catalogue is from "
                              f"such a site; sites: {', '.join(sorted(held)) or 'none yet'}")
    codes = [m for m in flt.modality if m not in FOLDERS and m not in dicom_modality_codes()]
    if codes:
        held = _held(con, "SELECT DISTINCT upper(modality) FROM images")
        unknown = [code for code in codes if code not in held]
        if unknown:
            raise CohortError(
                f"modality {_shown(unknown[0])}: not a DICOM modality code, nor one an image in "
                f"the catalogue holds; use a code (held: {', '.join(sorted(held)) or 'none yet'})"
                " or a folder (xray, ct, mri, other)")


def _held(con: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    return {row[0] for row in con.execute(sql).fetchall() if row[0]}


def _modality_sql(modalities: tuple[str, ...], params: dict[str, Any]) -> str:
    """Images of any of the codes or folders named. Only the kinds named are tested: an empty
    list in place of the codes would match every image whose Modality is empty."""
    tests = []
    codes = [m for m in modalities if m not in FOLDERS]
    folders = [m for m in modalities if m in FOLDERS]
    if codes:
        params["mod"] = codes
        tests.append("list_contains($mod, upper(i.modality))")
    if folders:
        params["folder"] = folders
        tests.append("list_contains($folder, i.folder)")
    return f"({' OR '.join(tests)})"


def compile_filter(flt: CohortFilter, sets: tuple[str, ...], columns: set[str]) -> CompiledCohort:
    """The filter as SQL over the catalogue views, scoped to ``sets``."""
    _check_sets(sets)
    p: dict[str, Any] = {"sets": list(sets)}
    pat = ["list_contains($sets, p.set_name)"]
    if flt.covid_status:
        p["covid"] = list(flt.covid_status)
        pat.append("list_contains($covid, lower(p.covid_status))")
    if flt.sex:
        p["sex"] = list(flt.sex)
        pat.append("list_contains($sex, p.sex)")
    if flt.ethnicity:
        p["eth"] = [e.lower() for e in flt.ethnicity]
        pat.append("list_contains($eth, lower(p.ethnicity))")
    if flt.age_min is not None:
        p["age_min"] = flt.age_min
        pat.append("p.age >= $age_min")
    if flt.age_max is not None:
        p["age_max"] = flt.age_max
        pat.append("p.age <= $age_max")
    if flt.site:
        p["site"] = list(flt.site)
        pat.append("list_has_any(p.sites, $site)")
    if flt.clinical:
        pat.append(_clinical_sql(flt.clinical, columns, p))

    img = ["list_contains($sets, i.set_name)", "i.pseudonym IN (SELECT pseudonym FROM pat)"]
    if flt.modality:
        img.append(_modality_sql(flt.modality, p))
    if flt.site:
        img.append("list_contains($site, i.site)")
    if flt.study_date_from:
        p["d_from"] = flt.study_date_from
        img.append("i.study_date >= $d_from")
    if flt.study_date_to:
        p["d_to"] = flt.study_date_to
        img.append("i.study_date <= $d_to")
    if flt.within:
        expr = _field_expr(flt.within.field, columns, p, "wf")
        if field_kinds().get(flt.within.field) != "date":  # TRY_CAST would match no image
            raise CohortError(f"within: {flt.within.field} is not a date field; date fields: "
                              f"{', '.join(fields_of_kind('date'))}")
        p["w_before"], p["w_after"] = flt.within.days_before, flt.within.days_after
        img.append(
            "EXISTS (SELECT 1 FROM clinical c WHERE c.pseudonym = i.pseudonym"
            " AND list_contains($sets, c.set_name)"
            f" AND i.study_date BETWEEN TRY_CAST({expr} AS DATE) - CAST($w_before AS INTEGER)"
            f" AND TRY_CAST({expr} AS DATE) + CAST($w_after AS INTEGER))")

    cp = ("SELECT DISTINCT pseudonym FROM img" if flt.has_image_criteria
          else "SELECT pseudonym FROM pat")
    ctes = (f"pat AS (SELECT p.* FROM patients p WHERE {' AND '.join(pat)}),\n"
            f"img AS (SELECT i.* FROM images i WHERE {' AND '.join(img)}),\n"
            f"cp AS ({cp})")
    return CompiledCohort(ctes, p)


# ---------------------------------------------------------------- running

@dataclass
class Counts:
    patients: int
    studies: int
    images: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Cohort:
    """A compiled cohort over one catalogue connection: counts first, lists on request."""

    def __init__(self, flt: CohortFilter, sets: tuple[str, ...], source: Source | None = None):
        self.filter = flt
        self.sets = sets
        self.source = source or default_source()
        self.con = self.source.connect()
        try:
            self.limits = _QueryLimits.of_settings()
            self.limits.apply(self.con)
            check_named_codes(flt, self.con)
            self.compiled = compile_filter(flt, sets, clinical_columns(self.con))
        except BaseException:
            self.con.close()  # a refused filter must not leave the catalogue open
            raise
        self._counts: Counts | None = None

    def _execute(self, select: str, extra: dict[str, Any] | None = None,
                 fetch: Callable[[duckdb.DuckDBPyConnection], Any] | None = None):
        """Run ``select`` over the cohort's CTEs, and ``fetch`` its result, within the limits."""
        sql = self.compiled.sql(select)
        params = {**self.compiled.params, **(extra or {})}
        with self.limits.timed(self.con):
            result = self.con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})
            return fetch(result) if fetch else result

    @contextmanager
    def arrow_batches(self, select: str, rows: int) -> Iterator[pa.RecordBatchReader]:
        """``select`` as Arrow batches of ``rows`` (an export's tables: no copy in memory),
        within the limits until the ``with`` ends: a streamed statement runs while it is read."""
        sql = self.compiled.sql(select)
        params = {k: v for k, v in self.compiled.params.items() if f"${k}" in sql}
        relation = self.con.sql(sql, params=params)  # lazy: runs as the reader is read
        with self.limits.timed(self.con), relation.to_arrow_reader(rows) as reader:
            yield reader

    def counts(self) -> Counts:
        if self._counts is None:
            # img only holds cohort patients' images (img ⊆ pat, and cp is img's patients
            # whenever an image criterion is set), so one pass over img gives both counts.
            row = self._execute(
                "SELECT (SELECT count(*) FROM cp), count(DISTINCT study_uid), count(*) FROM img",
                fetch=_one_row)
            self._counts = Counts(int(row[0]), int(row[1]), int(row[2]))
        return self._counts

    def patients(self, limit: int | None = None, offset: int = 0) -> pd.DataFrame:
        return self._execute("SELECT p.* FROM pat p WHERE p.pseudonym IN (SELECT pseudonym FROM cp) "
                             "ORDER BY p.pseudonym" + _page(limit), _page_params(limit, offset),
                             fetch=_frame)

    def images(self, limit: int | None = None, offset: int = 0) -> pd.DataFrame:
        return self._execute("SELECT * FROM img "
                             "ORDER BY pseudonym, study_uid, series_uid, sop_uid" + _page(limit),
                             _page_params(limit, offset), fetch=_frame)

    def image_rows(self, columns: str = "storage_key, size, sha256, folder, set_name",
                   where: str = "TRUE"):
        """Images (those meeting ``where``, a fixed SQL condition) as a streaming cursor of
        tuples (for exports and datasets: no frame in memory)."""
        return self._execute(f"SELECT {columns} FROM img WHERE {where} "
                             "ORDER BY pseudonym, study_uid, series_uid, sop_uid")

    def clinical(self) -> pd.DataFrame:
        return self._execute("SELECT c.* FROM clinical c WHERE list_contains($sets, c.set_name) "
                             "AND c.pseudonym IN (SELECT pseudonym FROM cp) "
                             "ORDER BY c.pseudonym, c.kind, c.site", fetch=_frame)

    def close(self) -> None:
        self.con.close()


def _one_row(result: duckdb.DuckDBPyConnection) -> tuple:
    return result.fetchone()


def _frame(result: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return result.df()


@dataclass(frozen=True)
class _QueryLimits:
    """How long one research statement may run and how much memory its connection may use
    (settings ``research_query_seconds``, ``research_query_memory_mb``)."""

    seconds: int
    memory_mb: int

    @classmethod
    def of_settings(cls) -> _QueryLimits:
        from nccid.config import get_settings

        settings = get_settings()
        return cls(settings.research_query_seconds, settings.research_query_memory_mb)

    def apply(self, con: duckdb.DuckDBPyConnection) -> None:
        # No temporary directory: DuckDB would spill cohort rows to ./.tmp of whatever folder
        # the process runs in, a place nothing cleans; past the limit the query fails instead.
        con.execute(f"SET memory_limit = '{int(self.memory_mb)}MB'")
        con.execute("SET temp_directory = ''")

    @contextmanager
    def timed(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """DuckDB's own cancellation (``interrupt``) from a timer thread past ``seconds``; the
        lock makes sure a statement that finished in time leaves no interrupt behind."""
        lock, state = threading.Lock(), {"running": True, "fired": False}

        def interrupt() -> None:
            with lock:
                if state["running"]:
                    state["fired"] = True
                    con.interrupt()

        timer = threading.Timer(self.seconds, interrupt)
        timer.daemon = True
        timer.start()
        try:
            yield
        except duckdb.InterruptException:
            if not state["fired"]:
                raise
            raise self._out_of_time() from None
        except duckdb.OutOfMemoryException:
            raise self._out_of_memory() from None
        except OSError as exc:  # an Arrow stream hands DuckDB's errors on as OSError, same text
            if state["fired"] and str(exc).startswith(_ARROW_INTERRUPTED):
                raise self._out_of_time() from None
            if str(exc).startswith(_ARROW_OUT_OF_MEMORY):
                raise self._out_of_memory() from None
            raise
        finally:
            with lock:
                state["running"] = False
            timer.cancel()

    def _out_of_time(self) -> QueryLimitError:
        return QueryLimitError(
            f"the query ran past the research time limit ({self.seconds} s) and was "
            "stopped: narrow the cohort, or ask the data manager to raise "
            "research_query_seconds")

    def _out_of_memory(self) -> QueryLimitError:
        return QueryLimitError(
            f"the query needed more than the research memory limit ({self.memory_mb} MB) "
            "and was stopped: narrow the cohort, or ask the data manager to raise "
            "research_query_memory_mb")


# How DuckDB's interruption and memory errors begin when read through an Arrow stream.
_ARROW_INTERRUPTED = "INTERRUPT Error"
_ARROW_OUT_OF_MEMORY = "Out of Memory Error"


def _page(limit: int | None) -> str:
    return " LIMIT $limit OFFSET $offset" if limit is not None else ""


def _page_params(limit: int | None, offset: int) -> dict[str, Any]:
    return {"limit": int(limit), "offset": int(offset)} if limit is not None else {}


def select_cohort(user: Any, flt: CohortFilter, source: Source | None = None,
                  action: str = "research.cohort") -> Cohort:
    """The cohort ``user`` may see, its query recorded in the audit log (filter and counts)."""
    from nccid.accounts.models import audit

    cohort = Cohort(flt, scope_for(user), source)
    try:
        counts = cohort.counts()
        audit(user, action, filter=flt.to_dict(), sets=list(cohort.sets), **counts.as_dict())
    except BaseException:
        cohort.close()
        raise
    return cohort
