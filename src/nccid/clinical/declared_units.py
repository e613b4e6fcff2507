"""The units a site may declare it reports in (``Site.declared_units``), read from the
templates: a declaration is checked when saved, since at upload a unit a column does not take
refuses every sheet of the site, and a key that names no field is never read."""

from __future__ import annotations

from functools import cache

from .schema import Column, normalise_header, templates

EXAMPLE = '{"d_dimer": "ng/mL", "crp": "mg/dL"}'


class DeclaredUnitsError(ValueError):
    """The declaration cannot be used; ``problems`` says why, one sentence each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _columns_by_field() -> dict[str, list[Column]]:
    found: dict[str, list[Column]] = {}
    for template in templates().values():
        for column in template.columns:
            found.setdefault(column.field, []).append(column)
    return found


@cache
def declarable_units() -> dict[str, tuple[str, ...]]:
    """Field -> the units a site may declare for it, the template's own first: those every
    column of that field accepts (a field in two templates must take the unit in both)."""
    declarable = {}
    for name, columns in _columns_by_field().items():
        units = [u for u in columns[0].accepted_units()
                 if all(u in c.accepted_units() for c in columns[1:])]
        if units:
            declarable[name] = tuple(units)
    return declarable


def _field_named(key: str) -> tuple[str | None, str | None]:
    """The declarable field ``key`` names (a field name, or a template header: "CRP"), or
    None and why not."""
    declarable = declarable_units()
    if key.strip().casefold() in declarable:
        return key.strip().casefold(), None
    fields = {c.field for t in templates().values() if (c := t.by_key.get(normalise_header(key)))}
    usable = sorted(fields & declarable.keys())
    if len(usable) == 1 and len(fields) == 1:
        return usable[0], None
    if len(fields) > 1:
        return None, f"'{key}' is a header of several fields ({', '.join(sorted(fields))}): name one"
    if fields:
        named = next(iter(fields))
        return None, f"'{key}'{'' if named == key else f' ({named})'} takes no unit"
    return None, f"'{key}' is not a field that takes a unit"


def checked_declared_units(value: object) -> dict[str, str]:
    """``value`` as stored: field names (a header is taken for its field) to units in the
    template's spelling ("mg/dl" -> "mg/dL"). Raises DeclaredUnitsError listing every problem
    with what is allowed."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise DeclaredUnitsError([f"Write an object of field names and units, e.g. {EXAMPLE}, "
                                  "or {} for none"])
    declarable = declarable_units()
    checked: dict[str, str] = {}
    problems: list[str] = []
    for key, unit in value.items():
        field, why = _field_named(str(key))
        if field is None:
            problems.append(f"{why}: the fields that do are {', '.join(sorted(declarable))}")
            continue
        named = _unit_named(field, unit)
        if named is None:
            problems.append(f"{field}: {unit!r} is not a unit it takes: use one of "
                            f"{', '.join(declarable[field])}")
        elif checked.get(field, named) != named:
            problems.append(f"{field} is declared twice, as {checked[field]} and {named}")
        else:
            checked[field] = named
    if problems:
        raise DeclaredUnitsError(problems)
    return checked


def _unit_named(field: str, unit: object) -> str | None:
    """The declarable unit ``unit`` names, in the template's spelling, or None."""
    if not isinstance(unit, str):
        return None
    named = {c.unit_named(unit) for c in _columns_by_field()[field]}
    return next(iter(named)) if len(named) == 1 and named <= set(declarable_units()[field]) else None


def described() -> str:
    """The fields a site may declare a unit for and their units, for a help text."""
    return "; ".join(f"{name}: {', '.join(units)}" for name, units in sorted(declarable_units().items())
                     if len(units) > 1)
