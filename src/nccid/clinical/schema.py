"""The clinical templates as data: a small engine over the TOML files in ``schema/``.

Each template (positive v1.5, negative v1.0, ISARIC v1.0) is a list of columns with the exact
header text sites know, historical aliases, the cleaned field name, type, code list, plausible
range and units. Nothing here knows about Django; validation and the xlsx writer only look
things up.
"""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

SCHEMA_DIR = Path(__file__).with_name("schema")
KINDS = ("positive", "negative", "isaric")
TYPES = ("identifier", "text", "integer", "decimal", "date", "code")

_SPACES = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^A-Z0-9]+")


class SchemaError(Exception):
    """The schema files are inconsistent (a bug in the data, caught at load time)."""


def split_legend(header: str) -> tuple[str, str | None]:
    """``"Smoking status (Never = 0, ...)"`` -> ``("Smoking status", "Never = 0, ...")``: the
    trailing bracket (nested brackets kept whole) and what comes before it; None when there
    is no trailing bracket."""
    text = header.strip()
    if not text.endswith(")"):
        return text, None
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            depth -= 1
            if depth == 0:
                name = text[:i].strip()
                return (name, text[i + 1:-1].strip()) if name else (text, None)
    return text, None


def strip_legend(header: str) -> str:
    """``"Smoking status (Never = 0, ...)"`` -> ``"Smoking status"`` (trailing bracket only)."""
    return split_legend(header)[0]


def normalise_header(header: object) -> str:
    """Case, runs of spaces and a trailing legend do not matter when matching a header."""
    text = _SPACES.sub(" ", str(header or "")).strip()
    return strip_legend(text).casefold()


def header_bracket(header: object) -> str | None:
    """The trailing bracket of a sheet's header (its unit or code legend), spaces folded."""
    return split_legend(_SPACES.sub(" ", str(header or "")).strip())[1]


def folded(text: str) -> str:
    """Text compared ignoring case and spaces: ``"Male=1, female = 0"``."""
    return _SPACES.sub("", text).casefold()


_SUPERSCRIPT_POWER = re.compile(r"10([⁰¹²³⁴⁵⁶⁷⁸⁹]+)")
_SUPERSCRIPT_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", string.digits)
_TIMES_POWER = re.compile(r"^[x×*](?=10\^)")
_FEU = "feu"  # fibrinogen-equivalent units: how D-dimer is reported, not a unit of its own
_RANGE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(?:-|–|—|to)\s*(\d+(?:\.\d+)?)$")


def unit_key(text: str) -> str:
    """A unit as compared: case, spaces and the spellings of ``headers.toml`` aside, so
    "×10⁹/L", "x 10^9/L" and "10*9/l" are "10^9/l", "ºC" and "Celsius" are "°c", "bpm" is
    "/min", "micromol/L" is "umol/l"; a trailing "FEU" is dropped."""
    key = _SUPERSCRIPT_POWER.sub(lambda m: "10^" + m[1].translate(_SUPERSCRIPT_DIGITS), folded(text))
    spellings = _header_rules()
    for written, meant in spellings["unit_spellings"].items():
        key = key.replace(written, meant)
    key = _TIMES_POWER.sub("", key)
    if key.endswith(_FEU) and len(key) > len(_FEU):
        key = key[:-len(_FEU)]
    return spellings["unit_names"].get(key, key)


def number_range(text: str) -> tuple[float, float] | None:
    """``"0-17"``, ``"3 – 15"``, ``"0 to 21"`` -> (low, high); None when not a range."""
    match = _RANGE.match(text.strip())
    return (float(match[1]), float(match[2])) if match else None


def phrase(text: str) -> str:
    """Upper case, punctuation and runs of spaces as one space: ``"White - British"`` and
    ``"WHITE BRITISH"`` are the same phrase."""
    return _NOT_WORD.sub(" ", text.upper()).strip()


@dataclass(frozen=True)
class LabText:
    """How laboratory report text reads as a result: words that mean positive (unless negated),
    words that mean negative, negations, and words that make a report unclear."""

    positive: frozenset[str]
    negative: frozenset[str]
    negations: frozenset[str]
    negating_prefixes: tuple[str, ...]
    unclear: frozenset[str]


@dataclass(frozen=True)
class CodeList:
    name: str
    codes: dict[str, str]  # code -> label
    lookup: dict[str, str]  # upper-cased typed text, and its phrase(), -> code or sub-code
    unknown: frozenset[str] = frozenset()
    text_rules: tuple[tuple[tuple[str, ...], str], ...] = ()  # (words, code), most specific first
    specify: bool = False
    subcodes: dict[str, str] = field(default_factory=dict)  # published sub-code -> description
    free_text: bool = False
    lab_text: LabText | None = None
    expected: str = ""  # what the column takes, for messages (default: the legend)
    aliases: dict[str, str] = field(default_factory=dict)  # other spellings, as written -> code

    def legend(self) -> str:
        return ", ".join(f"{label} = {code}" for code, label in self.codes.items())

    def code_of(self, text: str) -> str | None:
        """The code that typed text names (a code, a label, an alias), or None."""
        key = text.strip().upper()
        return self.lookup.get(key) or self.lookup.get(phrase(key))

    def legend_agrees(self, legend: str) -> bool | None:
        """Whether a header's legend says what this list says: every "label = code" pair
        names one code on both sides ("Male = 1" and "1 = Male" agree; "Male = 0" does not),
        or both sides are values this list takes as unknown ("Unknown = 2" in Sex); a bare
        list or range of codes ("0/1", "2, 3, 4, 5", "2-5") agrees when each is one of its
        codes. None for a bracket that is neither."""
        pairs = _legend_pairs(legend)
        if pairs:
            return all(self._pair_agrees(left, right) for left, right in pairs)
        listed = _listed_codes(legend)
        if listed is None:
            return None
        return all(self.code_of(code) is not None for code in listed)

    def _pair_agrees(self, left: str, right: str) -> bool:
        code = self.code_of(left)
        if code is not None:
            return code == self.code_of(right)
        return left.strip().upper() in self.unknown and right.strip().upper() in self.unknown

    def label(self, code: str) -> str:
        """The label of a code or of a sub-code (the label of the code it refines)."""
        return self.codes[code] if code in self.codes else self.codes[code[0]]

    def dropdown(self) -> list[str]:
        return list(self.codes)


@dataclass(frozen=True)
class Column:
    header: str
    field: str
    type: str
    aliases: tuple[str, ...] = ()
    required: bool = False
    identifier: str | None = None
    codes: CodeList | None = None
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    units: dict[str, tuple[float, float]] = field(default_factory=dict)
    unit_aliases: dict[str, str] = field(default_factory=dict)
    fraction_at_most: float | None = None
    text_values: dict[str, float] = field(default_factory=dict)
    max_length: int | None = None
    hint: str = ""
    in_template: bool = True
    # The fields the cleaner makes of this column in place of it (a negative sheet's swab
    # rows are folded into one record per patient); () when the cleaned record keeps the field.
    cleaned_as: tuple[str, ...] = ()

    @cached_property
    def label(self) -> str:
        return strip_legend(self.header)

    @cached_property
    def legend(self) -> str | None:
        """The template header's own trailing bracket: its unit or codes, if it states them."""
        return split_legend(self.header)[1]

    def accepted_units(self) -> list[str]:
        return [u for u in (self.unit, *self.units) if u]

    def unit_named(self, text: str) -> str | None:
        """The accepted unit ``text`` names (a unit or an alias of one, in any spelling
        ``unit_key`` folds), or None."""
        wanted = unit_key(text)
        for name in (*self.accepted_units(), *self.unit_aliases):
            if unit_key(name) == wanted:
                return self.unit_aliases.get(name, name)
        return None

    def range_within(self, text: str) -> bool:
        """Whether ``text`` is a number range within (or equal to) the plausible range: a
        header's "(0-17)" says what the column takes, not a unit."""
        span = number_range(text)
        if span is None or self.type not in ("integer", "decimal"):
            return False
        low = float("-inf") if self.min is None else self.min
        high = float("inf") if self.max is None else self.max
        return low <= span[0] <= span[1] <= high

    def input_hint(self) -> str:
        """The short text shown when a cell of this column is selected in the template."""
        if self.hint:
            return self.hint
        if self.codes is not None:
            return self.codes.legend()
        if self.type == "date":
            return ("A date: YYYY-MM-DD, DD/MM/YYYY (or your site's declared format), 13 Jul 2020 "
                    "or a date cell")
        if self.type in ("integer", "decimal"):
            kind = "A whole number" if self.type == "integer" else "A number"
            unit = f" in {self.unit}" if self.unit else ""
            return f"{kind}{unit}"
        return "Text"


@dataclass(frozen=True)
class Template:
    kind: str
    version: str
    title: str
    one_row_per_patient: bool
    columns: tuple[Column, ...]
    by_key: dict[str, Column]
    rows_cleaned_as: str | None = None  # the list a patient's rows are kept in, when folded

    def cleaned_fields(self) -> list[str]:
        """The single-valued fields a cleaned record of this template holds: each column's
        own, or those it is cleaned as; never identifiers (the cleaner may add derived ones,
        such as the ISARIC 4C score)."""
        return [name for c in self.columns if c.identifier is None
                for name in (c.cleaned_as or (c.field,))]

    def cleaned_as_of(self) -> dict[str, tuple[str, ...]]:
        """Each column the cleaner folds into other fields -> those fields."""
        return {c.field: c.cleaned_as for c in self.columns if c.cleaned_as}

    def column_for(self, header: object) -> Column | None:
        return self.by_key.get(normalise_header(header))

    def template_columns(self) -> list[Column]:
        return [c for c in self.columns if c.in_template]

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.template_columns()]

    def field(self, name: str) -> Column:
        for column in self.columns:
            if column.field == name:
                return column
        raise KeyError(name)


_NESTED = re.compile(r"\([^()]*\)")
_PAIR = re.compile(r"^([^=:]+?)\s*[=:]\s*([^=:]+)$")
_DASH_PAIR = re.compile(r"^(.+?)\s+[-–]\s+(\S+)$")  # "Male - 1": a dash between spaces
_SHORT_CODE = re.compile(r"^\w{1,2}$")


def _legend_pairs(legend: str) -> list[tuple[str, str]]:
    """``"Never = 0, Other = 5 (please specify)"`` -> ``[("Never", "0"), ("Other", "5")]``;
    [] when a part is not ``label = code`` (nor ``label - code``)."""
    parts = [p.strip() for p in re.split(r"[,;]", _NESTED.sub("", legend))]
    matches = [_PAIR.match(p) or _DASH_PAIR.match(p) for p in parts if p]
    if not matches or not all(matches):
        return []
    return [(m[1].strip(), m[2].strip()) for m in matches]


def _listed_codes(legend: str) -> list[str] | None:
    """``"0/1"``, ``"2, 3, 4, 5"``, ``"2-5"`` -> the codes listed; None when the bracket is
    not a list of short codes."""
    span = number_range(legend)
    if span is not None:
        low, high = span
        if not (low.is_integer() and high.is_integer() and 0 <= high - low <= 20):
            return None
        return [str(n) for n in range(int(low), int(high) + 1)]
    parts = [p.strip() for p in re.split(r"[,;/]", legend)]
    if len(parts) < 2 or not all(_SHORT_CODE.match(p) for p in parts):
        return None
    return parts


def _read(name: str) -> dict:
    with open(SCHEMA_DIR / name, "rb") as handle:
        return tomllib.load(handle)


def _code_list(name: str, spec: dict) -> CodeList:
    codes = {str(code): label for code, label in spec["codes"]}
    subcodes = {code.upper(): text for code, text in spec.get("subcodes", {}).items()}
    for code in subcodes:
        if code[0] not in codes:
            raise SchemaError(f"code list {name}: sub-code {code!r} refines no code")
    known = set(codes) | set(subcodes)
    lookup = {code.upper(): code for code in known}
    named = [(text, code) for code, text in subcodes.items()] + list(spec.get("aliases", {}).items())
    for alias, code in named:
        if code not in known:
            raise SchemaError(f"code list {name}: alias {alias!r} points at unknown code {code!r}")
        for key in (alias.upper(), phrase(alias)):
            if lookup.setdefault(key, code) != code:
                raise SchemaError(f"code list {name}: {alias!r} names two codes")
    for alias, code in spec.get("exact_aliases", {}).items():  # punctuation that matters: ">1"
        if code not in known or lookup.setdefault(alias.upper(), code) != code:
            raise SchemaError(f"code list {name}: exact alias {alias!r} is not one code's")
    _add_labels(lookup, codes)
    return CodeList(
        name=name, codes=codes, lookup=lookup,
        unknown=frozenset(u.upper() for u in spec.get("unknown", [])),
        text_rules=_text_rules(name, spec.get("text_rules", []), known),
        specify=spec.get("specify", False), subcodes=subcodes,
        free_text=spec.get("free_text", False), lab_text=_lab_text(spec.get("lab_text")),
        expected=spec.get("expected", ""),
        aliases={**spec.get("aliases", {}), **spec.get("exact_aliases", {})},
    )


def _add_labels(lookup: dict[str, str], codes: dict[str, str]) -> None:
    """A code's label, as the header's legend writes it ("Never", "Death"), names the code
    too, unless it is the label of several codes ("White") or means another code already."""
    labels = [label for label in codes.values()]
    for code, label in codes.items():
        if labels.count(label) == 1:
            for key in (label.upper(), phrase(label)):
                lookup.setdefault(key, code)


def _text_rules(name: str, rules: list, known: set[str]) -> tuple[tuple[tuple[str, ...], str], ...]:
    """Rules as word sequences, the most specific (most words, then longest) first."""
    for _, code in rules:
        if code not in known:
            raise SchemaError(f"code list {name}: text rule points at unknown code {code!r}")
    words = [(tuple(phrase(needle).split()), code) for needle, code in rules]
    return tuple(sorted(words, key=lambda rule: (-len(rule[0]), -len(" ".join(rule[0])))))


def _lab_text(spec: dict | None) -> LabText | None:
    if spec is None:
        return None

    def upper(key: str) -> frozenset[str]:
        return frozenset(w.upper() for w in spec.get(key, []))

    return LabText(positive=upper("positive"), negative=upper("negative"),
                   negations=upper("negations"),
                   negating_prefixes=tuple(p.upper() for p in spec.get("negating_prefixes", [])),
                   unclear=upper("unclear"))


def _conversion(value: float | list) -> tuple[float, float]:
    if isinstance(value, list):
        return float(value[0]), float(value[1])
    return float(value), 0.0


def _column(spec: dict, code_lists: dict[str, CodeList], kind: str) -> Column:
    where = f"{kind} template, column {spec.get('header')!r}"
    if spec.get("type") not in TYPES:
        raise SchemaError(f"{where}: type must be one of {TYPES}")
    codes = None
    if spec["type"] == "code":
        if spec.get("codes") not in code_lists:
            raise SchemaError(f"{where}: unknown code list {spec.get('codes')!r}")
        codes = code_lists[spec["codes"]]
    units = {u: _conversion(v) for u, v in spec.get("units", {}).items()}
    for alias, unit in spec.get("unit_aliases", {}).items():
        if unit not in units and unit != spec.get("unit"):
            raise SchemaError(f"{where}: unit alias {alias!r} names unknown unit {unit!r}")
    return Column(
        header=spec["header"], field=spec["field"], type=spec["type"],
        aliases=tuple(spec.get("aliases", ())), required=spec.get("required", False),
        identifier=spec.get("identifier"), codes=codes, min=spec.get("min"), max=spec.get("max"),
        unit=spec.get("unit"), units=units, unit_aliases=dict(spec.get("unit_aliases", {})),
        fraction_at_most=spec.get("fraction_at_most"),
        text_values={k.upper(): float(v) for k, v in spec.get("text_values", {}).items()},
        max_length=spec.get("max_length"), hint=spec.get("hint", ""),
        in_template=spec.get("in_template", True),
        cleaned_as=tuple(spec.get("cleaned_as", ())),
    )


def _template(spec: dict, code_lists: dict[str, CodeList]) -> Template:
    info = spec["template"]
    columns = tuple(_column(c, code_lists, info["kind"]) for c in spec["column"])
    by_key: dict[str, Column] = {}
    fields: set[str] = set()
    for column in columns:
        if column.field in fields or not re.fullmatch(r"[a-z][a-z0-9_]*", column.field):
            raise SchemaError(f"{info['kind']}: field name {column.field!r} is repeated or not lower_snake_case")
        fields.add(column.field)
        for name in (column.header, *column.aliases):
            key = normalise_header(name)
            if by_key.get(key, column) is not column:
                raise SchemaError(f"{info['kind']}: header {name!r} matches two columns")
            by_key[key] = column
    _check_cleaned_as(info, columns, fields)
    return Template(
        kind=info["kind"], version=str(info["version"]), title=info["title"],
        one_row_per_patient=info["one_row_per_patient"], columns=columns, by_key=by_key,
        rows_cleaned_as=info.get("rows_cleaned_as"),
    )


def _check_cleaned_as(info: dict, columns: tuple[Column, ...], fields: set[str]) -> None:
    """A column is cleaned as other fields only where rows are folded, into lower_snake_case
    names no column of the template has."""
    for column in columns:
        if column.cleaned_as and not info.get("rows_cleaned_as"):
            raise SchemaError(f"{info['kind']}: {column.field} has cleaned_as, but the template "
                              "folds no rows (rows_cleaned_as)")
        for name in column.cleaned_as:
            if name in fields or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise SchemaError(f"{info['kind']}: {column.field} is cleaned as {name!r}, "
                                  "a column's field or not lower_snake_case")


@cache
def code_lists() -> dict[str, CodeList]:
    return {name: _code_list(name, spec) for name, spec in _read("codes.toml").items()}


@cache
def templates() -> dict[str, Template]:
    lists = code_lists()
    loaded = {kind: _template(_read(f"{kind}.toml"), lists) for kind in KINDS}
    for kind, template in loaded.items():
        if template.kind != kind:
            raise SchemaError(f"{kind}.toml declares kind {template.kind!r}")
    return loaded


def get_template(kind: str) -> Template:
    try:
        return templates()[kind]
    except KeyError:
        raise ValueError(f"unknown template kind {kind!r}: use one of {', '.join(KINDS)}") from None


@cache
def _header_rules() -> dict:
    return _read("headers.toml")


@cache
def harmless_brackets() -> frozenset[str]:
    """Brackets a header may end in that state neither a unit nor codes (folded)."""
    return frozenset(folded(text) for text in _header_rules()["harmless"])


@cache
def unit_vocabulary() -> frozenset[str]:
    """Every unit the schema knows (``unit_key`` form): any column's units and their aliases,
    and ``other_units``. A header naming one its column does not take names another unit."""
    names = list(_header_rules()["other_units"])
    for template in templates().values():
        for column in template.columns:
            names += [*column.accepted_units(), *column.unit_aliases]
    return frozenset(unit_key(name) for name in names)


@cache
def isaric4c_rules() -> dict:
    return _read("isaric4c.toml")


def describe() -> str:
    """The schema as a Markdown reference (``python -m nccid.clinical.describe`` writes FIELDS.md)."""
    lines = ["# Clinical template fields", "",
             "Generated from the TOML files beside this one by `python -m nccid.clinical.describe`;",
             "a test fails when it is out of date. Edit the TOML, then regenerate.", ""]
    for template in templates().values():
        lines += [f"## {template.title} (`{template.kind}`)", "",
                  "| header | also accepted | field | type | codes / range | unit (alternatives) | required |",
                  "|---|---|---|---|---|---|---|"]
        for c in template.columns:
            codes = c.codes.legend() if c.codes else (
                f"{c.min if c.min is not None else ''}–{c.max if c.max is not None else ''}"
                if c.min is not None or c.max is not None else "")
            units = (c.unit or "") + (f" ({', '.join(c.units)})" if c.units else "")
            aliases = ", ".join(f"`{a}`" for a in c.aliases)
            header = c.header.replace("|", "\\|").replace("  ", "&nbsp;&nbsp;")
            note = "" if c.in_template else " (not in the download)"
            lines.append(f"| {header}{note} | {aliases} | `{c.field}` | {c.type} | {codes} | {units} | "
                         f"{'yes' if c.required else ''} |")
        lines.append("")
    return "\n".join(lines + _describe_code_lists())


def _describe_code_lists() -> list[str]:
    lines = ["## Other accepted text in coded columns", "",
             "Matched ignoring case, spaces and punctuation, as are a code's own label (`Never`,",
             "`Death`) when it names one code only. Other text is read as `codes.toml` says",
             "(laboratory text word by word, negation-aware; other ethnicity text by whole words, with",
             "a warning) or is an error for the cell: a code is never guessed.", ""]
    for codes in code_lists().values():
        if not codes.aliases and not codes.subcodes:
            continue
        lines.append(f"- `{codes.name}`: " + "; ".join(f"{text} = {code}" for text, code in codes.aliases.items()))
        if codes.subcodes:
            lines.append("  - sub-codes (the group of their first letter): "
                         + "; ".join(f"{code} {text}" for code, text in codes.subcodes.items()))
    lines.append("")
    return lines
