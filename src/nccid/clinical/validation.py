"""Validate every cell of a clinical sheet against its template and pseudonymise. Pure.

All problems are collected, never just the first: each is ``{row, column, value, reason}``
in plain English. Errors reject their row (bad NHS/CHI number, unparseable date, text in a
number field, unknown code or unclear result text); warnings keep it (implausible values are
kept as typed in ``data``, set to ``None`` in ``cleaned`` and the field is listed in ``flags``).

A possible birth date (a date where no date belongs, or one before the study) and words that
could be a name are never shown in a message nor kept in ``data``.

Identifiers are replaced as soon as they are read: the NHS/CHI number by its pseudonym, the
hospital number by its site-scoped keyed hash. No identifier value is ever put in a message
(``value`` is blank for identifier columns). The normalised numbers are handed back only in
``Result.vault_numbers`` so the caller can encrypt them for the vault.

Speed: each column gets one compiled converter (a closure) and the row loop only calls them;
no regular expression is compiled per cell, and each distinct value of a column is converted
once (``_remembering``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from openpyxl.utils import get_column_letter

from nccid.identity.numbers import (
    InvalidPatientNumber,
    is_test_number,
    looks_like_patient_number,
    validate_patient_number,
)
from nccid.identity.reasons import date_pattern

from . import hospital_numbers
from .hospital_numbers import NO_NUMBERS, UploadNumbers
from .reader import Layout, Sheet, SpreadsheetRejected
from .schema import CodeList, Column, LabText, Template, isaric4c_rules, phrase

EXCEL_EPOCH = dt.date(1899, 12, 30)
EXCEL_1904_OFFSET = 1462  # days from 1900-based serial 0 to the 1904 date system's day 0
DATE_MIN = dt.date(2019, 12, 1)  # plausible clinical dates: the pandemic era up to today
DATE_FORMATS = {"DMY": "DD/MM/YYYY", "MDY": "MM/DD/YYYY"}
UNKNOWN_LABEL = "Unknown"  # what a value a code list takes as unknown ("Not known" as a sex) is recorded as

_NUMBER_WITH_UNIT = re.compile(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*([^\d\s.].*)?$", re.ASCII)
_COMMA_NUMBER = re.compile(r"^[-+]?\d+(?:,\d+)+(?:\.\d*)?(?:\s*\D.*)?$", re.ASCII)
# A time after a date is ignored: 24-hour or 12-hour (9:30 PM, 9:30pm, 9:30 a.m., as Excel's
# and LibreOffice's CSV export writes a cell formatted dd/mm/yyyy h:mm AM/PM).
_TIME = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*[ap]\.?m\.?)?"
# Year first: always year, month, day (2020-07-13, 2020/07/13); a time and zone after it are
# ignored, the date kept as written (2020-07-13T23:30:00Z is 13 July, wherever that was).
_ISO_DATE = re.compile(r"^(\d{4})([-/.])(\d{1,2})\2(\d{1,2})"
                       rf"(?:[T ]{_TIME}(?:\s*(?:Z|[+-]\d{{2}}(?::?\d{{2}})?))?)?$",
                       re.ASCII | re.IGNORECASE)
_SLASH_DATE = re.compile(rf"^(\d{{1,2}})[/.\-](\d{{1,2}})[/.\-](\d{{4}}|\d{{2}})(?:\s+{_TIME})?$",
                         re.ASCII | re.IGNORECASE)
# A month by name: day first (13 Jul 2020, 13-Jul-20 as Excel's CSV writes d-mmm-yy, 13th of
# July 2020, 13JUL2020), month first with a four-digit year (July 13, 2020) or year first
# (2020-Jul-13); a weekday before it is checked. Every spelling is one the date-in-wrong-column
# guard finds (identity/reasons.toml), so a birth date typed so elsewhere is still refused.
_WORDY_DATE = re.compile(
    r"^(?:(?P<weekday>[a-z]+)\.?,?\s+)?"
    r"(?:(?P<day>\d{1,2})(?:st|nd|rd|th)?(?:\s+of)?[\s\-/.]*(?P<month>[a-z]+)\.?[\s\-/.,]*(?P<year>\d{4}|\d{2})"
    r"|(?P<month_first>[a-z]+)\.?\s*(?P<day_second>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year_last>(?:19|20)\d{2})"
    r"|(?P<year_first>\d{4})[\s\-/.]*(?P<month_second>[a-z]+)[\s\-/.]*(?P<day_last>\d{1,2}))"
    rf"(?:[\sT]+{_TIME})?$", re.ASCII | re.IGNORECASE)
_MONTHS = {name: number for number, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
    ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
    ("oct", "october"), ("nov", "november"), ("dec", "december")), start=1) for name in names}
_WEEKDAYS = {name: number for number, names in enumerate((
    ("mon", "monday"), ("tue", "tues", "tuesday"), ("wed", "weds", "wednesday"),
    ("thu", "thur", "thurs", "thursday"), ("fri", "friday"), ("sat", "saturday"),
    ("sun", "sunday"))) for name in names}
_SPECIFY = re.compile(r"^(\w{1,3})\s*[-:–]\s*\S")
_CLAUSES = re.compile(r"[,;:.()\[\]]+")
_WORD = re.compile(r"[A-Z0-9]+")

# A date where no date belongs, or one before the study, may be a birth date: it is never shown
# in a message (problems are kept in the main database) nor kept in the record's data.
DATE_IN_WRONG_COLUMN = ("is a date, and this column does not take dates (value not shown: it may "
                        "be a birth date)")
DATE_BEFORE_STUDY = (f"is a date before {DATE_MIN:%-d %B %Y}, the start of the study, so not a "
                     "clinical date (value not shown: it may be a birth date); left out of the data")
EXCEL_ERROR = ("the cell holds {error} (a formula that failed): type the value, or leave the "
               "cell empty if it is not known")
INVALID_EARLY_DATE = (f"is not a valid date, and its year is before the study ({DATE_MIN.year}); "
                      "value not shown: it may be a birth date")


class CellError(ValueError):
    """The cell cannot be used: the row is rejected. ``hide``: never show the value."""

    def __init__(self, reason: str, *, hide: bool = False):
        super().__init__(reason)
        self.hide = hide


class CellWarning(Exception):
    """The cell is kept as typed but is implausible or unknown: flagged, cleaned to ``clean``.
    ``hide``: the value is neither shown nor kept (``data`` is then None)."""

    def __init__(self, reason: str, data: object, clean: object = None, *, hide: bool = False):
        super().__init__(reason)
        self.reason, self.data, self.clean, self.hide = reason, data, clean, hide


@dataclass(frozen=True)
class SiteRules:
    """What validation needs to know about the submitting site."""

    code: str
    date_format: str = "DMY"  # "DMY" | "MDY"; anything else: only unambiguous dates accepted
    declared_units: dict[str, str] = field(default_factory=dict)  # field -> unit
    # NHS test-range numbers (999…): a live installation refuses them (setting
    # accept_test_numbers); this library, used by tests and tools, accepts them by default.
    accept_test_numbers: bool = True


@dataclass
class Problem:
    row: int
    column: str  # the template's header of the column (a sheet's own header can hold anything)
    label: str  # the column's short name used in messages
    value: str  # as typed; always blank for identifier columns
    reason: str
    severity: str = "error"

    @property
    def message(self) -> str:
        return f"Row {self.row}, {self.label}: {self.reason}"

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "value": self.value, "reason": self.reason,
                "severity": self.severity, "message": self.message}


# A sheet with a systematic mistake has a problem in every cell: 50,000 rows of 100 columns
# made 4 million, gigabytes while checking and too big a record to save. The first ones of
# each column are kept in full (a site corrects a column's mistake once, from a few rows);
# the rest are counted by column and severity, so the site is told how many more there are.
PROBLEMS_PER_COLUMN = 1000  # of one severity in one column
PROBLEMS_KEPT = 10_000  # of each severity: warnings never take the room of an error


class ProblemList(list):
    """The problems of a sheet: the first ``per_column`` of each column and severity, up to
    ``limit`` of each severity; the others only counted in ``omitted`` ({(column, severity):
    count}), so memory stays bounded while the rows are read. Errors have a budget of their
    own: with one shared, a warning in every cell of ten columns filled it before a row's
    error was found, and the site could not see which rows were refused."""

    def __init__(self, per_column: int | None = None, limit: int | None = None):
        super().__init__()
        self.per_column = PROBLEMS_PER_COLUMN if per_column is None else per_column
        self.limit = PROBLEMS_KEPT if limit is None else limit
        self.kept: dict[tuple[str, str], int] = {}
        self.kept_of: dict[str, int] = {}  # severity -> kept
        self.omitted: dict[tuple[str, str], int] = {}

    def append(self, problem: Problem) -> None:
        key = (problem.column, problem.severity)
        if not self._room_for(key):
            self.omitted[key] = self.omitted.get(key, 0) + 1
            return
        self.kept[key] = self.kept.get(key, 0) + 1
        self.kept_of[problem.severity] = self.kept_of.get(problem.severity, 0) + 1
        super().append(problem)

    def _room_for(self, key: tuple[str, str]) -> bool:
        column_severity, severity = self.kept.get(key, 0), self.kept_of.get(key[1], 0)
        return column_severity < self.per_column and severity < self.limit

    def extend(self, problems) -> None:
        for problem in problems:
            self.append(problem)

    __iadd__ = None  # ``+=`` would bypass the bound: use extend

    def omitted_list(self) -> list[dict]:
        """The problems not kept, as [{column, severity, count}], errors first, most first."""
        return [{"column": column, "severity": severity, "count": count}
                for (column, severity), count in sorted(
                    self.omitted.items(), key=lambda item: (item[0][1] != "error", -item[1], item[0][0]))]


@dataclass
class PatientRecord:
    """One patient's validated, pseudonymised data from one upload (identifiers removed)."""

    pseudonym: str
    hospital_hash: str | None  # the first; a negative sheet's patient may have several
    data: dict
    cleaned: dict
    flags: list[str]
    rows: list[int]
    hospital_hashes: dict[str, list[int]] = field(default_factory=dict)  # every hash -> its rows


@dataclass
class Result:
    template: Template
    total_rows: int
    records: list[PatientRecord]
    problems: list[Problem]
    rejected_rows: set[int]
    vault_numbers: dict[str, str]  # pseudonym -> normalised number, for vault encryption only
    sheet_warnings: list[str] = field(default_factory=list)

    @property
    def omitted(self) -> list[dict]:
        """Problems counted but not kept (see ``ProblemList``): [{column, severity, count}]."""
        return self.problems.omitted_list() if isinstance(self.problems, ProblemList) else []

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def accepted_rows(self) -> int:
        return self.total_rows - len(self.rejected_rows)


class ConfigurationError(ValueError):
    """The site's declared settings do not fit the template (e.g. an unknown unit)."""


# --- converters ---------------------------------------------------------------------------

def _shown(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _number(value: object) -> tuple[float, str | None]:
    """A finite number and the unit typed after it, if any."""
    if isinstance(value, bool):
        raise CellError("is a TRUE/FALSE cell, not a number")
    if isinstance(value, dt.time | dt.timedelta):
        raise CellError("is a time, not a number", hide=True)
    text = str(value).strip()
    typed_unit = None
    if "_" in text:  # float() reads "6_5" as 65
        raise CellError(f"'{text}' is not a number")
    try:
        number = float(text)
    except ValueError:
        if _COMMA_NUMBER.match(text):
            raise CellError(f"'{text}' has a comma: type numbers without thousands separators, "
                            "with a point for decimals (1234 or 1.5)") from None
        match = _NUMBER_WITH_UNIT.match(text)
        if match is None:
            raise CellError(f"'{text}' is not a number") from None
        number = float(match.group(1))
        typed_unit = match.group(2).strip() if match.group(2) else None
    if not math.isfinite(number):  # "nan", "inf", 400 digits: JSON cannot hold them
        raise CellError(f"'{text}' is not a number" if len(text) < 20 else "is not a number (too large)")
    return number, typed_unit


def _out_of_range(column: Column, typed: object) -> CellWarning:
    unit = f" {column.unit}" if column.unit else ""
    return CellWarning(
        f"'{_shown(typed)}' is outside the plausible range {_fmt(column.min)} to "
        f"{_fmt(column.max)}{unit}: kept as typed, left out of the cleaned data",
        data=typed if isinstance(typed, int | float) else str(typed),
    )


def _fmt(number: float | None) -> str:
    if number is None:
        return "any"
    return str(int(number)) if float(number).is_integer() else str(number)


def _numeric(column: Column, sheet_unit: str | None) -> Callable:
    """``sheet_unit``: what the values are in unless a cell names its unit (the unit the
    header names, else the site's declared unit; None: the canonical unit)."""
    units = {u.casefold(): u for u in column.accepted_units()}
    units.update({a.casefold(): u for a, u in column.unit_aliases.items()})
    conversions = dict(column.units)
    conversions[column.unit] = (1.0, 0.0)  # the canonical unit (None for unitless counts)
    site_unit = sheet_unit or column.unit
    integer = column.type == "integer"
    canonical_unit = column.unit
    text_values = column.text_values
    fraction_at_most = column.fraction_at_most

    low = float("-inf") if column.min is None else column.min
    high = float("inf") if column.max is None else column.max

    def convert(value: object) -> tuple[object, object]:
        kind = type(value)
        if kind is float or kind is int:  # the usual case for xlsx: no parsing at all
            number, typed_unit = value, None
        elif text_values and kind is str and value.strip().upper() in text_values:
            canonical = text_values[value.strip().upper()]
            if not low <= canonical <= high:
                raise _out_of_range(column, value)
            return value.strip(), canonical
        else:
            number, typed_unit = _number(value)
        unit = site_unit
        if typed_unit is not None:
            unit = units.get(typed_unit.casefold())
            if unit is None:
                raise CellError(_unit_refused(column, value, typed_unit))
        if integer:
            if number != int(number):
                raise CellError(f"'{_shown(value)}' is not a whole number")
            number = int(number)
        # A percent-formatted spreadsheet cell holds 0.95 for 95%: no percentage is that small.
        if fraction_at_most is not None and typed_unit is None and unit == canonical_unit \
                and 0 < number <= fraction_at_most:
            unit = "fraction"
        if unit == canonical_unit:
            canonical = number
        else:
            factor, offset = conversions[unit]
            canonical = number * factor + offset
            canonical = int(canonical) if integer and canonical == int(canonical) else round(canonical, 4)
        if not low <= canonical <= high:
            raise _out_of_range(column, number)
        return number, canonical

    return convert


def _unit_refused(column: Column, value: object, typed_unit: str) -> str:
    accepted = column.accepted_units()
    if not accepted:
        return f"'{_shown(value)}': this column takes a plain number, without a unit"
    return f"'{_shown(value)}': unit '{typed_unit}' is not one of {', '.join(accepted)}"


def _refusing_dates(convert: Callable) -> Callable:
    """For every column but dates: a date typed here, in any spelling and anywhere in the cell
    ("DOB 13 Jul 1931", "b.1931-07-13", 19310713), is refused and never shown. The spellings
    are those refused in a data manager's reason (``identity/reasons.toml``) but a year and
    month alone, in clinical text mostly a span of years ("2010-11")."""

    date_in = date_pattern().search
    has_digit = _DIGIT.search  # every spelling has one: most text is passed over at once
    seen: dict[str, bool] = {}  # per distinct text: a column repeats its values

    def is_date(text: str) -> bool:
        found = seen.get(text)
        if found is None:
            if len(seen) >= _SEEN_AT_MOST:
                seen.clear()
            found = seen[text] = date_in(text) is not None
        return found

    def guarded(value: object) -> tuple[object, object]:
        kind = type(value)
        if kind is str:
            if has_digit(value) and is_date(value):
                raise CellError(DATE_IN_WRONG_COLUMN, hide=True)
        elif kind is float or kind is int:  # a number cell: 19310713; 7021931 (07021931 typed)
            if 1_000_000 <= value < 100_000_000 and value == int(value) and date_in(f"{int(value):08d}"):
                raise CellError(DATE_IN_WRONG_COLUMN, hide=True)
        elif isinstance(value, dt.date):
            raise CellError(DATE_IN_WRONG_COLUMN, hide=True)
        return convert(value)

    return guarded


_DIGIT = re.compile(r"\d")
_SEEN_AT_MOST = 100_000  # distinct texts remembered per column (bounds the memory)


def _date(column: Column, date_format: str, *, other_order_row: int | None = None,
          date1904: bool = False) -> Callable:
    """``other_order_row``: a row of this column whose date can only be read in the other
    day/month order; then a date that could be read either way is refused, not read in the
    site's order (a column of US dates in a DD/MM site would be half refused, half swapped)."""
    today = dt.date.today()
    declared = DATE_FORMATS.get(date_format)
    other = DATE_FORMATS["MDY" if date_format == "DMY" else "DMY"] if declared else None

    def slash(text: str, a: int, b: int, year: int) -> dt.date:
        if other_order_row is not None and a != b and a <= 12 and b <= 12:
            raise CellError(
                f"'{text}' could be {_spell(a, b, year)} or {_spell(b, a, year)}, and this column "
                f"looks like {other}: row {other_order_row} can only be read that way. Use "
                f"YYYY-MM-DD, or correct the column to {declared}")
        if date_format == "MDY":
            month, day = a, b
        elif date_format == "DMY":
            day, month = a, b
        elif a > 12 >= b:
            day, month = a, b
        elif b > 12 >= a:
            month, day = a, b
        elif a == b:
            day = month = a
        else:
            raise CellError(
                f"'{text}' is ambiguous: it could be {_spell(a, b, year)} or {_spell(b, a, year)}. "
                "Use YYYY-MM-DD, or ask the data manager to declare your site's date format"
            )
        try:
            return dt.date(year, month, day)
        except ValueError:
            why = f"there is no month {month}" if not 1 <= month <= 12 else f"month {month} has no day {day}"
            hint = ""
            if 1 <= day <= 12 and month > 12 and declared:
                hint = " (it looks like the other day/month order: please correct it rather than let us guess)"
            raise CellError(
                f"'{text}' is not a valid date in this site's declared format {declared or 'DD/MM/YYYY'}: "
                f"{why}{hint}"
            ) from None

    def parse_text(text: str) -> dt.date:  # the usual spellings first: this runs per cell
        if match := _ISO_DATE.match(text):
            try:
                return dt.date(int(match[1]), int(match[3]), int(match[4]))
            except ValueError:
                raise CellError(f"'{text}' is not a valid date (YYYY-MM-DD)") from None
        if match := _SLASH_DATE.match(text):
            return slash(text, int(match[1]), int(match[2]), _full_year(match[3]))
        if text.isascii() and text.isdigit():  # "²" is a digit to isdigit(), not to int()
            return _serial(int(text), date1904)
        if (match := _WORDY_DATE.match(text)) and (day := _wordy_date(text, match)):
            return day
        raise CellError(f"'{text}' is not a date: use YYYY-MM-DD, {declared or 'DD/MM/YYYY'} or "
                        "13 Jul 2020")

    def parse(text: str) -> dt.date:
        try:
            return parse_text(text)
        except CellError:
            if _has_early_year(text):  # "31/02/1950", "4/3/1950" (ambiguous): a birth date?
                raise CellError(INVALID_EARLY_DATE, hide=True) from None
            raise

    def convert(value: object) -> tuple[object, object]:
        if isinstance(value, dt.datetime):
            day = value.date()
        elif isinstance(value, dt.date):
            day = value
        elif type(value) is float or type(value) is int:
            day = _serial(value, date1904)
        else:
            day = parse(str(value).strip())
        if day < DATE_MIN:
            raise CellWarning(DATE_BEFORE_STUDY, data=None, hide=True)
        iso = day.isoformat()
        if day > today:
            raise CellWarning(
                f"'{iso}' is after today: kept as typed, left out of the cleaned data", data=iso,
            )
        return iso, iso

    return convert


def _full_year(digits: str) -> int:
    """A two-digit year is this century's (13/07/20, 13-Jul-20: 2020) unless that is after this
    year: 13/07/31 is 1931, a birth date perhaps, kept from view as every date before the study
    is (read as 2031 it was shown in a warning and kept)."""
    if len(digits) != 2:
        return int(digits)
    year = 2000 + int(digits)
    return year - 100 if year > dt.date.today().year else year


def _wordy_date(text: str, match: re.Match) -> dt.date | None:
    """The date of a ``_WORDY_DATE`` match, None when a word is no month or weekday; a day the
    month lacks or a weekday the date does not fall on is refused."""
    day, month, year = ((match["day"], match["month"], match["year"]) if match["day"] else
                        (match["day_second"], match["month_first"], match["year_last"]) if match["day_second"]
                        else (match["day_last"], match["month_second"], match["year_first"]))
    number = _MONTHS.get(month.lower())
    weekday = _WEEKDAYS.get(match["weekday"].lower()) if match["weekday"] else None
    if number is None or (match["weekday"] and weekday is None):
        return None
    try:
        date = dt.date(_full_year(year), number, int(day))
    except ValueError:
        raise CellError(f"'{text}' is not a valid date: {dt.date(2000, number, 1):%B} has no day "
                        f"{int(day)}") from None
    if weekday is not None and date.weekday() != weekday:
        raise CellError(f"'{text}' names the wrong weekday: {date:%-d %B %Y} is a {date:%A}. Correct "
                        "the date, or leave the weekday out")
    return date


_YEAR = re.compile(r"(?<!\d)[12]\d{3}(?!\d)", re.ASCII)


def _has_early_year(text: str) -> bool:
    return any(int(year) < DATE_MIN.year for year in _YEAR.findall(text))


def plausible_date(iso: str | None) -> str | None:
    """An ISO date kept in data, or None when it is outside the study period (to today)."""
    if not iso:
        return None
    try:
        day = dt.date.fromisoformat(iso)
    except ValueError:
        return None
    return iso if DATE_MIN <= day <= dt.date.today() else None


def _spell(day: int, month: int, year: int) -> str:
    try:
        return dt.date(year, month, day).strftime("%-d %B %Y")
    except ValueError:
        return f"day {day} of month {month}"


def _serial(number: float, date1904: bool = False) -> dt.date:
    """An Excel serial day number (what a date cell holds when read as a number); a workbook
    of the 1904 date system (older Mac Excel) counts from 1 January 1904."""
    if not 1 <= number < 2958466:
        raise CellError(f"'{_shown(number)}' is not a date")
    return EXCEL_EPOCH + dt.timedelta(days=int(number) + (EXCEL_1904_OFFSET if date1904 else 0))


def other_order_row(sheet: Sheet, index: int, date_format: str) -> int | None:
    """The first row whose date in column ``index`` is a valid date only in the other
    day/month order than the site's (DD/MM: "04/15/2020"), when such dates are the majority
    of the column's dates readable one way only: the column was typed in the other order.
    None otherwise: a typo or one date typed the other way is refused on its own row, and
    does not put the column's other dates in doubt."""
    if date_format not in DATE_FORMATS:
        return None
    first_other, other, own = None, 0, 0
    order_of: dict[str, str | None] = {}  # per distinct text: a column repeats its dates
    for rownum, cells in sheet.rows:
        value = cells[index]
        if type(value) is not str:
            continue
        if value not in order_of:
            order_of[value] = _one_way_order(value, date_format)
        order = order_of[value]
        if order == "other":
            other += 1
            first_other = first_other or rownum
        elif order == "own":
            own += 1
    return first_other if other > own else None


def _one_way_order(text: str, date_format: str) -> str | None:
    """"own" or "other": the only day/month order a slash date can be read in; None when it
    is no slash date, or can be read either way (or neither)."""
    match = _SLASH_DATE.match(text.strip())
    if match is None:
        return None
    first, second = int(match[1]), int(match[2])
    day, month = (first, second) if date_format == "DMY" else (second, first)
    if month > 12 and 1 <= day <= 12 and 1 <= month <= 31:
        return "other"
    if day > 12 and 1 <= month <= 12 and day <= 31:
        return "own"
    return None


def _code(column: Column) -> Callable:
    codes = column.codes
    assert codes is not None
    lookup, label = codes.lookup, codes.label
    expected = codes.expected or codes.legend()
    numeric = {float(k): c for k, c in lookup.items() if k.isdigit()}  # spreadsheets give 1.0

    def convert(value: object) -> tuple[object, object]:
        kind = type(value)
        if (kind is float or kind is int) and value in numeric:
            code = numeric[value]
            return code, label(code)
        if kind is float and value.is_integer():
            key = str(int(value))
        else:
            key = str(value).strip().upper()
            if key.endswith(".0") and key[:-2].isdigit():
                key = key[:-2]
        code = lookup.get(key) or lookup.get(phrase(key))
        if code is not None:
            return code, label(code)
        if key in codes.unknown:
            raise CellWarning(f"'{_shown(value)}' is not one of {expected}: recorded as Unknown",
                              data=_shown(value), clean=UNKNOWN_LABEL)
        if codes.specify and (match := _SPECIFY.match(key)) and match[1] in lookup:
            code = lookup[match[1]]
            return code, label(code)
        if codes.free_text and looks_like_patient_number(key):
            raise CellError(IDENTIFIER_IN_WRONG_COLUMN)
        if codes.lab_text is not None:
            code = _lab_result(codes.lab_text, key, value)
            return code, label(code)
        if codes.text_rules:
            code = _read_by_words(codes, key, value)
            raise CellWarning(f"'{_shown(value)}' is not a code or an exact description: read as "
                              f"{label(code)} (code {code}); please use the code", data=code,
                              clean=label(code))
        raise CellError(f"'{_shown(value)}' is not one of {expected}")

    return convert


def _lab_result(words: LabText, key: str, value: object) -> str:
    """"0" or "1" from laboratory report text, negation-aware; anything unclear is an error."""
    results = set()
    for clause in _CLAUSES.split(key):
        negated = False
        for word in _WORD.findall(clause):
            if word in words.unclear:
                raise CellError(f"'{_shown(value)}' is not a clear result (it says {word.lower()}): "
                                "enter Negative = 0 or Positive = 1")
            if word in words.negations:
                negated = True
            elif word in words.positive:
                results.add("0" if negated else "1")
            elif any(word.startswith(p) and word[len(p):] in words.positive for p in words.negating_prefixes):
                results.add("0")
            elif word in words.negative:
                if negated:
                    raise CellError(f"'{_shown(value)}' negates a negative result: enter Negative = 0 "
                                    "or Positive = 1")
                results.add("0")
    if len(results) != 1:
        found = "both a positive and a negative result" if results else "no recognised result"
        raise CellError(f"'{_shown(value)}' holds {found}: enter Negative = 0 or Positive = 1")
    return results.pop()


def _read_by_words(codes: CodeList, key: str, value: object) -> str:
    """The code of the most specific text rule found as whole words; an error when no rule
    matches or the rules found name different groups."""
    words = phrase(key).split()
    used = [False] * len(words)
    found: list[str] = []
    for needle, code in codes.text_rules:
        for start in range(len(words) - len(needle) + 1):
            span = range(start, start + len(needle))
            if tuple(words[start:start + len(needle)]) == needle and not any(used[i] for i in span):
                for i in span:
                    used[i] = True
                found.append(code)
    groups = sorted({codes.label(code) for code in found})
    if not groups:
        raise CellError(f"'{_shown(value)}' is not {codes.expected or codes.legend()}")
    if len(groups) > 1:
        raise CellError(f"'{_shown(value)}' could be {' or '.join(groups)}: please use the code")
    return found[0]


TEST_NUMBER = "test number"
TEST_NUMBER_REFUSED = ("is an NHS test number (999 range), not a patient's: this installation "
                       "refuses test data (setting accept_test_numbers)")


def _number_refused(why: str) -> str:
    """Why a row's NHS/CHI number is refused (the number itself is never shown)."""
    if why == "is empty":
        return "is missing: every row needs the patient's NHS or CHI number"
    if why == TEST_NUMBER:
        return TEST_NUMBER_REFUSED
    if why == SCIENTIFIC:
        return IN_SCIENTIFIC_NOTATION
    return f"is not a valid NHS/CHI number: it {why}"


# Excel shows a long number in a General cell as 1.23457E+11 and a CSV it saves keeps only
# that: the digits are lost. The sign after the E is always written, so "12E34567", a
# hospital number of letters and digits, is no such notation.
_SCIENTIFIC = re.compile(r"^[-+]?\d+(?:[.,]\d+)?[eE][-+]\d+$", re.ASCII)
SCIENTIFIC = "scientific notation"
IN_SCIENTIFIC_NOTATION = ("is in scientific notation (such as 4.5E+11): the spreadsheet rounded "
                          "the number and its last digits are lost. Format the column as Text and "
                          "enter the numbers again")
EXCEL_DIGITS = 15  # a number cell keeps 15 significant digits: the rest become zeros
TOO_MANY_DIGITS = (f"is a number cell of more than {EXCEL_DIGITS} digits: Excel keeps only "
                   f"{EXCEL_DIGITS}, so its last digits are lost. Format the column as Text and "
                   "enter the numbers again")


# A hospital number that passes the NHS/CHI check (1 in 14 ten-digit ones): an image whose
# Patient ID holds it, sent before a sheet linked it, was taken for that number's patient.
PASSES_AS_ANOTHER_NUMBER = (
    "passes the NHS/CHI number check but is not this row's NHS/CHI number: the row is "
    "imported, and images whose Patient ID is this hospital number are linked to this patient "
    "from now on. Images sent with it before this sheet may have been filed as another "
    "patient: a data manager can move them (docs/dicom-node.md, 'Linked to the patient')")


def _passes_as_another_number(number: str, digits: str) -> bool:
    try:
        return validate_patient_number(number) != digits
    except InvalidPatientNumber:
        return False


def _hospital_number_refused(value: object, text: str, limit: int) -> str | None:
    """Why a row's hospital number cannot be linked (the number itself is never shown)."""
    if len(text) > limit:
        return f"is longer than {limit} characters"
    if type(value) is str and _SCIENTIFIC.match(text):
        return IN_SCIENTIFIC_NOTATION
    if type(value) is float and abs(value) >= 10 ** EXCEL_DIGITS:
        return TOO_MANY_DIGITS
    return None


def number_cell_warnings(sheet: Sheet, layout: Layout) -> list[str]:
    """Number cells in the hospital-number column: a number keeps no leading zeros (00123456
    typed in a General cell is 123456), so an image whose patient ID starts with 0 would not be
    linked. Whether zeros were lost cannot be known: said once for the column, not refused."""
    index = next((i for i, c in enumerate(layout.columns) if c and c.identifier == "hospital_number"), None)
    if index is None:
        return []
    rows = [rownum for rownum, cells in sheet.rows if type(cells[index]) in (int, float)]
    if not rows:
        return []
    column = layout.columns[index]
    count = f"{len(rows)} rows (first: row {rows[0]})" if len(rows) > 1 else f"row {rows[0]}"
    return [f"column {get_column_letter(index + 1)} ('{column.label}') holds number cells in {count}: "
            "a number cell keeps no leading zeros (00123456 becomes 123456), and images whose patient "
            "ID starts with 0 are then not linked. If your hospital numbers can start with 0, format "
            "the column as Text and enter the numbers again"]


IDENTIFIER_IN_WRONG_COLUMN = ("looks like an NHS/CHI number: identifiers belong only in the "
                              "NHS/CHI Number column, so this row was not imported")


def _hospital_number_in_text(numbers: UploadNumbers, own: str, data: dict, by_field: dict[str, Column],
                             rownum: int, problems: list) -> bool:
    """True (and a problem naming the column, not the value) when a cell of the row keeps text
    holding a hospital number of the upload, or in a free-text column one of their pattern: it
    would reach researchers with the record. ``by_field``: the columns whose data can hold
    typed text (a date column keeps the date it read, written YYYY-MM-DD)."""
    if not numbers.lengths:
        return False
    shortest = numbers.shortest
    for name, value in data.items():
        if type(value) is not str or len(value) < shortest or name not in by_field:
            continue
        column = by_field[name]
        reason = numbers.free_text_reason(value, own) if column.type == "text" else numbers.reason(value, own)
        if reason:
            problems.append(Problem(rownum, column.header, column.label, "", reason))
            return True
    return False


def _problem(row: int, header: str, label: str, value: object, reason: str,
             severity: str = "error", numbers: UploadNumbers = NO_NUMBERS, own: str = "",
             hide: bool = False, free_text: bool = True) -> Problem:
    """A problem whose value and reason never repeat something that looks like an NHS/CHI
    number, a hospital number of the upload (``numbers``; ``own`` is the row's), a possible
    birth date (``hide``) or words that could be a name: the problems are kept with the
    upload, in the main database. Numbers, clinical dates and single words are shown, so the
    site can see what to correct; other values are named by row and column only. A value
    with the pattern of the upload's hospital numbers refuses the row in a free-text column
    only; in a number, code or date column it is a value of that column (a platelet count of
    250000 has the pattern of six-digit hospital numbers), so it is only not shown, and a
    warning stays a warning. An error there naming a hospital number of the upload says so."""
    shown = _shown(value)
    if looks_like_patient_number(shown):
        return Problem(row, header, label, "", IDENTIFIER_IN_WRONG_COLUMN, "error")
    if identifier := numbers.free_text_reason(shown, own):
        if free_text or (severity == "error" and numbers.reason(shown, own)):
            return Problem(row, header, label, "", identifier, "error")
        hide = True
    if hide:
        return Problem(row, header, label, "", _without(shown, reason), severity)
    if _WORDS.search(shown):
        reason = _without(shown, reason)
        kept = ", nor kept" if severity == "warning" else ""
        return Problem(row, header, label, "", f"{reason} (value not shown{kept}: it holds words, "
                       "which could be a name)", severity)
    return Problem(row, header, label, shown, reason, severity)


def _without(shown: str, reason: str) -> str:
    """The reason with the value it quotes replaced by "the value"."""
    return reason.replace(f"'{shown}'", "the value").replace(shown, "the value") if shown else reason


_WORDS = re.compile(r"[^\W\d_]{2,}[^\w]+[^\W\d_]{2,}")  # two words of letters


def _text(column: Column) -> Callable:
    limit = column.max_length

    def convert(value: object) -> tuple[object, object]:
        text = _shown(value).strip()
        if looks_like_patient_number(text):
            raise CellError(IDENTIFIER_IN_WRONG_COLUMN)
        if limit and len(text) > limit:
            raise CellError(f"is longer than {limit} characters")
        return text, text

    return convert


def compile_column(column: Column, site: SiteRules, *, header_unit: str | None = None,
                   other_order_row: int | None = None, date1904: bool = False,
                   date_format: str | None = None) -> Callable:
    """The converter of one column. ``header_unit``: the unit the sheet's header names (it
    wins over the site's declared unit); ``date_format``: the day/month order the header
    states (over the site's); the other date arguments: see ``_date``."""
    declared = site.declared_units.get(column.field)
    if declared is not None and declared not in column.accepted_units():
        raise ConfigurationError(
            f"the site's declared unit for {column.label} is '{declared}', which is not one of "
            f"{', '.join(column.accepted_units()) or 'no unit'}: ask a data manager to correct it"
        )
    if column.type == "date":
        return _date(column, date_format or site.date_format, other_order_row=other_order_row,
                     date1904=date1904)
    if column.type in ("integer", "decimal"):
        return _refusing_dates(_numeric(column, header_unit or declared))
    if column.type == "code":
        return _refusing_dates(_code(column))
    return _refusing_dates(_text(column))


# --- the row loop -------------------------------------------------------------------------

def validate(sheet: Sheet, layout: Layout, site: SiteRules, keyring,
             known_hospital_hashes: Callable[[set[str]], set[str]] | None = None) -> Result:
    """Validate and pseudonymise every row. ``keyring`` is an ``identity.keys.Keyring``;
    ``known_hospital_hashes`` picks, of the hospital-number hashes given, those the site's
    patients are linked by: text holding one of those numbers is refused too (None when the
    site links none: then no text is hashed)."""
    template = layout.template
    for column in template.columns:  # unknown declared units refuse the file, even if unused
        if column.type in ("integer", "decimal"):
            compile_column(column, site)
    refuse_month_first_import(sheet, layout, site)
    patient_index = hospital_index = None
    active: list[tuple[int, Column, str, str, Callable]] = []
    for index, column in enumerate(layout.columns):
        if column is None:
            continue
        if column.identifier == "patient_number":
            patient_index = index
        elif column.identifier == "hospital_number":
            hospital_index = index
        else:
            active.append((index, column, column.header, column.field,
                           _remembering(_compiled(sheet, layout, index, site))))
    blank_cleaned = {c.field: None for c in template.columns if c.identifier is None}
    headers = template_headers(layout)
    problems = ProblemList()
    rejected: set[int] = set()
    vault: dict[str, str] = {}
    accepted: list[tuple[int, str, str | None, dict, dict, list]] = []
    first_row_of: dict[str, int] = {}
    hospital_limit = template.field("hospital_number").max_length or 20
    cell_errors = sheet.cell_errors
    numbers = _upload_numbers(sheet, hospital_index, hospital_limit)
    by_field = {column.field: column for column in template.columns if column.type != "date"}

    for rownum, cells in sheet.rows:
        bad = False
        columns = active
        failed = cell_errors.get(rownum) if cell_errors else None
        if failed:  # Excel error cells: reported, and their columns not read
            bad = _excel_errors(rownum, failed, layout, headers, problems)
            columns = [entry for entry in active if entry[0] not in failed]
        # Identifiers first: replaced at once, never echoed.
        pseudonym = None
        raw = cells[patient_index] if patient_index is not None else None
        try:
            if type(raw) is str and _SCIENTIFIC.match(raw.strip()):
                raise InvalidPatientNumber(SCIENTIFIC)
            digits = validate_patient_number(raw.strip() if type(raw) is str else raw)
            if not site.accept_test_numbers and is_test_number(digits):
                raise InvalidPatientNumber(TEST_NUMBER)
            pseudonym = keyring.pseudonym(digits)
        except InvalidPatientNumber as exc:
            reason = _number_refused(str(exc))
            header = headers[patient_index] if patient_index is not None else "NHS/CHI Number"
            if not (failed and patient_index in failed):  # already reported as an error cell
                problems.append(Problem(rownum, header, "NHS/CHI Number", "", reason))
            bad = True
        hospital_hash, number = None, ""
        if hospital_index is not None:
            number = _shown(cells[hospital_index]).strip() if cells[hospital_index] is not None else ""
            if refused := _hospital_number_refused(cells[hospital_index], number, hospital_limit):
                problems.append(Problem(rownum, headers[hospital_index], "Hospital (Internal) Number", "",
                                        refused))
                bad = True
            elif number:
                hospital_hash = keyring.hospital_hash(site.code, number)
                if pseudonym is not None and _passes_as_another_number(number, digits):
                    problems.append(Problem(rownum, headers[hospital_index],
                                            "Hospital (Internal) Number", "",
                                            PASSES_AS_ANOTHER_NUMBER, "warning"))
        data: dict = {}
        cleaned = dict(blank_cleaned)
        flags: list[str] = []
        for index, column, header, name, convert in columns:
            value = cells[index]
            if value is None or (type(value) is str and not value.strip()):
                if column.required:
                    problems.append(Problem(rownum, header, column.label, "", "is required"))
                    bad = True
                continue
            try:
                data[name], cleaned[name] = convert(value)
            except CellError as exc:
                problems.append(_problem(rownum, header, column.label, value, str(exc),
                                         numbers=numbers, own=number, hide=exc.hide,
                                         free_text=column.type == "text"))
                bad = True
            except CellWarning as warn:
                problem = _problem(rownum, header, column.label, value, warn.reason, "warning",
                                   numbers=numbers, own=number, hide=warn.hide,
                                   free_text=column.type == "text")
                problems.append(problem)
                if problem.severity == "error":  # an identifier where it does not belong
                    bad = True
                    continue
                kept = None if numbers.reason(_shown(value), number) else _kept(warn, value, problem)
                data[column.field], cleaned[column.field] = kept, warn.clean
                flags.append(column.field)
            except (ValueError, ArithmeticError):  # a converter's bug must not hide the cell
                problems.append(_problem(rownum, header, column.label, value, "could not be read",
                                         numbers=numbers, own=number, free_text=column.type == "text"))
                bad = True
        if not bad:
            bad = _hospital_number_in_text(numbers, number, data, by_field, rownum, problems)
        if pseudonym is not None and template.one_row_per_patient and not bad:
            if pseudonym in first_row_of:
                problems.append(Problem(
                    rownum, headers[patient_index], "NHS/CHI Number", "",
                    f"is the same patient as row {first_row_of[pseudonym]}: the template has one row "
                    "per patient, so this row was not imported"))
                bad = True
            else:
                first_row_of[pseudonym] = rownum
        if bad:
            rejected.add(rownum)
            continue
        vault[pseudonym] = digits
        accepted.append((rownum, pseudonym, hospital_hash, data, cleaned, flags))

    if known_hospital_hashes is not None:
        refused = _site_hospital_numbers(known_hospital_hashes, lambda text: keyring.hospital_hash(
            site.code, text), hospital_limit, template, accepted, problems)
        rejected |= refused
        accepted = [entry for entry in accepted if entry[0] not in refused]
        vault = {p: vault[p] for p in {entry[1] for entry in accepted}}
    records = _combine(template, accepted, problems, headers, layout)
    problems.sort(key=lambda p: (p.row, p.severity != "error"))
    return Result(template=template, total_rows=len(sheet.rows), records=records, problems=problems,
                  rejected_rows=rejected, vault_numbers=vault,
                  sheet_warnings=list(layout.warnings) + declared_unit_warnings(layout, site)
                  + date_order_warnings(layout, site) + number_cell_warnings(sheet, layout))


def _upload_numbers(sheet: Sheet, hospital_index: int | None, limit: int) -> UploadNumbers:
    """Every hospital number of the sheet, to refuse text cells holding one (any row's)."""
    if hospital_index is None:
        return NO_NUMBERS
    return UploadNumbers.of([(rownum, _shown(cells[hospital_index])) for rownum, cells in sheet.rows
                             if cells[hospital_index] is not None], limit)


def _site_hospital_numbers(known: Callable[[set[str]], set[str]], hospital_hash: Callable[[str], str],
                           limit: int, template: Template, accepted: list,
                           problems: list[Problem]) -> set[int]:
    """The rows whose free text, or a value a problem shows, holds a hospital number a patient of
    the site is linked by (compared as keyed hashes). Each such text cell becomes an error naming
    its row and column, never the number, as does an error's value; a warning's value in a
    number, code or date column is only not shown, nor kept (a value of its column that
    happens to equal a hospital number: a warning must not refuse its row)."""
    text_fields = {c.field for c in template.columns if c.type == "text"}
    places: dict[str, list[tuple[int, str] | int]] = {}  # hash -> (row, field), or problem index
    hashes_of: dict[str, list[str]] = {}  # per distinct text: its candidates' keyed hashes

    def hashes(text: str) -> list[str]:
        if text not in hashes_of:
            hashes_of[text] = [hospital_hash(part) for part in hospital_numbers.candidates(text, limit)]
        return hashes_of[text]

    warned: dict[str, list[tuple[int, str]]] = {}  # hash -> (row, field) of a value kept with a warning
    for rownum, _pseudonym, _hash, data, _cleaned, flags in accepted:
        for name in text_fields & data.keys():
            for key in hashes(str(data[name])):
                places.setdefault(key, []).append((rownum, name))
        # Looked at in the data too: its warning may be one of those only counted (ProblemList).
        for name in set(flags) - text_fields:
            if data.get(name) is not None:
                for key in hashes(_shown(data[name])):
                    warned.setdefault(key, []).append((rownum, name))
    for index, problem in enumerate(problems):
        for key in hashes(problem.value):
            places.setdefault(key, []).append(index)
    found = known(set(places) | set(warned)) if places or warned else set()
    refused: set[int] = set()
    cells: set[tuple[int, str]] = set()
    by_header = {c.header: c for c in template.columns}
    data_of = {entry[0]: entry[3] for entry in accepted}
    for rownum, name in (place for key in found for place in warned.get(key, ())):
        data_of[rownum][name] = None  # a value of its column that equals a linked number: not kept
    for place in (place for key in found for place in places.get(key, ())):
        if not isinstance(place, int):
            cells.add(place)
            continue
        old = problems[place]
        column = by_header.get(old.column)
        if column is not None and column.type != "text" and old.severity == "warning":
            # A value of its column that equals a linked number: not shown, not kept, the row kept.
            problems[place] = Problem(old.row, old.column, old.label, "", _without(old.value, old.reason),
                                      old.severity)
            if old.row in data_of and column.field in data_of[old.row]:
                data_of[old.row][column.field] = None
            continue
        problems[place] = Problem(old.row, old.column, old.label, "", hospital_numbers.A_SITE_PATIENTS_NUMBER)
        refused.add(old.row)
    for rownum, name in sorted(cells):
        column = template.field(name)
        problems.append(Problem(rownum, column.header, column.label, "", hospital_numbers.A_SITE_PATIENTS_NUMBER))
        refused.add(rownum)
    return refused


# A column repeats its values (a code, a ward, the dates of a few months): each distinct value
# is converted once per sheet and its (data, cleaned) pair reused. Only values that convert
# cleanly are remembered (an error or a warning is raised again on every cell holding it),
# keyed by their type too (1, 1.0 and True convert differently), and at most this many per
# column, which bounds the memory. A zero is remembered by its sign (-0.0 equals 0.0 but is
# kept as typed); a date and time with a zone is not remembered (it equals the same instant in
# another zone, whose date may differ).
_REMEMBERED_AT_MOST = 2048


def _remembering(convert: Callable) -> Callable:
    results: dict[tuple[type, object], tuple[object, object]] = {}
    zeros: dict[float, tuple[object, object]] = {}  # by sign: 1.0 or -1.0

    def remembered(value: object) -> tuple[object, object]:
        key = (type(value), value)
        try:
            found = results.get(key)
        except TypeError:  # not hashable: no cell of a sheet, but a caller may pass one
            return convert(value)
        if found is not None:
            return found
        if key[0] is float and value == 0:
            sign = math.copysign(1.0, value)
            if sign not in zeros:
                zeros[sign] = convert(value)
            return zeros[sign]
        found = convert(value)
        if len(results) < _REMEMBERED_AT_MOST and getattr(value, "tzinfo", None) is None:
            results[key] = found
        return found

    return remembered


def _compiled(sheet: Sheet, layout: Layout, index: int, site: SiteRules) -> Callable:
    column = layout.columns[index]
    date_format = layout.date_orders.get(index, site.date_format)  # the header's order wins
    other_order = other_order_row(sheet, index, date_format) if column.type == "date" else None
    return compile_column(column, site, header_unit=layout.header_units.get(index),
                          other_order_row=other_order, date1904=sheet.date1904,
                          date_format=date_format)


def refuse_month_first_import(sheet: Sheet, layout: Layout, site: SiteRules) -> None:
    """Refuse the file when a day-first date column looks opened in a month-first (US) locale
    and saved: its dates valid month first (05/01/2021) became date cells with day and month
    swapped (1 May 2021), the others (13/04/2020) stayed text. Nothing in a cell tells them
    apart, so the column's date cells cannot be trusted. Names the columns, never a value."""
    headers = template_headers(layout)
    swapped = [f"column {get_column_letter(index + 1)} ('{headers[index]}')"
               for index, column in enumerate(layout.columns)
               if column is not None and column.type == "date"
               and layout.date_orders.get(index, site.date_format) != "MDY"
               and _month_first_import(sheet, index)]
    if swapped:
        raise SpreadsheetRejected(
            f"{' and '.join(swapped)} {'mix' if len(swapped) > 1 else 'mixes'} date cells with dates typed as text that can only be day "
            "first (a day after 12): the file seems to have been opened in a month-first (US) date "
            "setting and saved, which turns each date with a day of 12 or less into a date cell "
            "with day and month swapped. Open the original file again with UK date settings (or "
            "import the column as text) and save it, or format the column as text dates "
            "(DD/MM/YYYY), then upload it again")


def _month_first_import(sheet: Sheet, index: int) -> bool:
    """Column ``index`` holds date cells, all on days 1 to 12, and text dates, all readable
    day first only: what a month-first import of day-first dates leaves (one pass, per
    distinct text). A date cell on a later day, or a text date it would have made a cell
    (first number 12 or less), is no such import."""
    date_cells = day_first = False
    kind_of: dict[str, str | None] = {}  # per distinct text: a column repeats its dates
    for _rownum, cells in sheet.rows:
        value = cells[index]
        if type(value) is str:
            if value not in kind_of:
                kind_of[value] = _slash_kind(value)
            kind = kind_of[value]
            if kind == "month first":
                return False
            day_first = day_first or kind == "day first only"
        elif isinstance(value, dt.date):
            if value.day > 12:
                return False
            date_cells = True
    return date_cells and day_first


def _slash_kind(text: str) -> str | None:
    """"month first" for a slash date a month-first locale reads as a date (first number 12
    or less), "day first only" for one it leaves as text (13/04/2020), else None."""
    match = _SLASH_DATE.match(text.strip())
    if match is None:
        return None
    if int(match[1]) <= 12:
        return "month first"
    return "day first only" if int(match[2]) <= 12 else None


def date_order_warnings(layout: Layout, site: SiteRules) -> list[str]:
    """A date column whose header states another day/month order than the site's: said once."""
    warnings = []
    for index, order in sorted(layout.date_orders.items()):
        if order != site.date_format:
            site_order = DATE_FORMATS.get(site.date_format, "not declared")
            warnings.append(f"column {get_column_letter(index + 1)} ('{layout.columns[index].label}') "
                            f"is read as {DATE_FORMATS[order]}, as its header says (your site's date "
                            f"format: {site_order})")
    return warnings


def declared_unit_warnings(layout: Layout, site: SiteRules) -> list[str]:
    """A site's declared unit applies to a column headed as in the template (whose header
    names the template's unit): said once per column, so a stale declaration shows."""
    warnings = []
    for index, column in enumerate(layout.columns):
        declared = site.declared_units.get(column.field) if column is not None else None
        if declared and declared != column.unit and index not in layout.header_units:
            said = f" (the header says {column.unit})" if column.legend == column.unit else ""
            warnings.append(f"column {get_column_letter(index + 1)} ('{column.label}') is read in "
                            f"{declared}, the unit your site declared{said}: a header naming its "
                            f"unit, such as '{column.label} ({declared})', is read in that unit")
    return warnings


def template_headers(layout: Layout) -> list[str]:
    """Each sheet column's name in messages: the template's header, never the sheet's own text
    (a trailing bracket is ignored when matching a text or date column, so "Date of admission
    (a patient's name)" is the Date of admission column)."""
    return [column.header if column is not None else "" for column in layout.columns]


def _excel_errors(rownum: int, failed: dict[int, str], layout: Layout, headers: list[str],
                  problems: list[Problem]) -> bool:
    """A problem for each Excel error cell in a column of the template (identifiers included;
    columns the template lacks are ignored, as their values are); True if there was one."""
    found = False
    for index, code in sorted(failed.items()):
        column = layout.columns[index] if index < len(layout.columns) else None
        if column is None:
            continue
        error = f"the Excel error {code}" if code else "an Excel error"
        problems.append(Problem(rownum, headers[index], column.label, "", EXCEL_ERROR.format(error=error)))
        found = True
    return found


def _kept(warn: CellWarning, typed: object, problem: Problem) -> object:
    """What a warned cell keeps in data: never a value the message could not show (typed text
    that could be a name), so the main database does not hold it either."""
    if problem.value == "" and type(warn.data) is str and warn.data.strip() == _shown(typed).strip():
        return None
    return warn.data


def _combine(template: Template, accepted: list, problems: list[Problem], headers: list[str],
             layout: Layout) -> list[PatientRecord]:
    if template.kind == "negative":
        return _merge_swabs(accepted, problems, headers, layout)
    records = []
    score_header = None
    if template.kind == "isaric":
        index = next((i for i, c in enumerate(layout.columns) if c and c.field == "isaric_4c_score_supplied"), None)
        score_header = headers[index] if index is not None else None
    for rownum, pseudonym, hospital_hash, data, cleaned, flags in accepted:
        if template.kind == "isaric":
            _add_4c(rownum, cleaned, flags, problems, score_header)
        hashes = {hospital_hash: [rownum]} if hospital_hash else {}
        records.append(PatientRecord(pseudonym, hospital_hash, data, cleaned, flags, [rownum], hashes))
    return records


# --- negative sheets: several swabs per patient --------------------------------------------

def _merge_swabs(accepted: list, problems: list[Problem], headers: list[str],
                 layout: Layout) -> list[PatientRecord]:
    by_patient: dict[str, PatientRecord] = {}
    status_header = _header_of(layout, headers, "swab_status")
    number_header = _header_of(layout, headers, "hospital_number")
    for rownum, pseudonym, hospital_hash, data, _cleaned, flags in accepted:
        record = by_patient.get(pseudonym)
        if record is None:
            record = by_patient[pseudonym] = PatientRecord(
                pseudonym, hospital_hash, {"swabs": []}, {}, [], [])
        record.hospital_hash = record.hospital_hash or hospital_hash
        if hospital_hash:
            _note_other_number(record, hospital_hash, rownum, problems, number_header)
            record.hospital_hashes.setdefault(hospital_hash, []).append(rownum)
        if data.get("hospital"):
            record.data["hospital"] = data["hospital"]
        swab = {"date": data.get("swab_date"), "status": data.get("swab_status")}
        _note_same_day(record, swab, rownum, problems, status_header)
        record.data["swabs"].append(swab)
        record.flags.extend(f for f in flags if f not in record.flags)
        record.rows.append(rownum)
    for record in by_patient.values():
        record.data["swabs"] = _distinct(record.data["swabs"])
        record.cleaned = clean_negative(record.data)
    return list(by_patient.values())


def _note_other_number(record: PatientRecord, hospital_hash: str, rownum: int,
                       problems: list[Problem], header: str) -> None:
    """A patient given a second hospital number (a merged record, a number from another of
    the trust's hospitals): both are kept and linked, with a warning naming the rows."""
    if record.hospital_hashes and hospital_hash not in record.hospital_hashes:
        first = min(row for rows in record.hospital_hashes.values() for row in rows)
        problems.append(Problem(
            rownum, header, "Hospital (Internal) Number", "",
            f"the same patient has a different hospital number in row {first}: both are linked to "
            "the patient (check the sheet if that is not right)", "warning"))


def _header_of(layout: Layout, headers: list[str], field_name: str) -> str:
    index = next((i for i, c in enumerate(layout.columns) if c and c.field == field_name), None)
    return headers[index] if index is not None else field_name


def _note_same_day(record: PatientRecord, swab: dict, rownum: int, problems: list[Problem],
                   header: str) -> None:
    """Two swabs of one day with different results are both kept (two tests can be taken on
    one day; a positive is never dropped), with a warning so the site can check them."""
    for earlier, row in zip(record.data["swabs"], record.rows, strict=True):
        if swab["date"] and earlier["date"] == swab["date"] and earlier["status"] != swab["status"]:
            problems.append(Problem(
                rownum, header, "Swab status", "",
                f"the same patient has a swab on the same date with a different status in row {row}: "
                "both swabs are kept", "warning"))
            return


def _distinct(swabs: list[dict]) -> list[dict]:
    """One entry per (date, status), by date: a row repeated in a sheet adds nothing."""
    unique = {(s["date"], s["status"]): s for s in swabs}
    return sorted(unique.values(), key=lambda s: (s["date"] or "", s["status"] or ""))


def merge_swab_lists(old: list[dict], new: list[dict]) -> list[dict]:
    """Union of swabs by date: a later upload's swabs for a date replace the earlier upload's
    swabs of that date (a correction); within one upload every swab of a date is kept."""
    new_dates = {s["date"] for s in new}
    return _distinct([s for s in old if s["date"] not in new_dates] + list(new))


def clean_negative(data: dict) -> dict:
    """The research view of a patient's swabs: a date outside the study period (to today) is
    None in the cleaned swab and never the latest; its status still counts."""
    from .schema import code_lists

    labels = code_lists()["rt_pcr_result"].codes
    swabs = [{"date": plausible_date(s["date"]),
              "status": labels.get(s["status"]) if s["status"] is not None else None}
             for s in data.get("swabs", [])]
    dated = sorted((s for s in swabs if s["date"]), key=lambda s: s["date"])
    latest_date = dated[-1]["date"] if dated else None
    latest = [s["status"] for s in dated if s["date"] == latest_date]
    return {
        "hospital": data.get("hospital"),
        "swabs": swabs,
        "latest_swab_date": latest_date,
        "latest_swab_status": _latest_status(latest),
        "any_positive_swab": any(s["status"] == "Positive" for s in swabs),
    }


def _latest_status(statuses: list) -> str | None:
    """The status of the latest day's swabs: Positive if any of them was."""
    if not statuses:
        return None
    return "Positive" if "Positive" in statuses else statuses[-1]


# --- ISARIC 4C mortality score --------------------------------------------------------------

def _points(bands: list[dict], value: float) -> int:
    for band in bands:
        if "below" in band and value < band["below"]:
            return band["points"]
        if "at_most" in band and value <= band["at_most"]:
            return band["points"]
        if "below" not in band and "at_most" not in band:
            return band["points"]
    raise ValueError("score bands do not cover the value")


def isaric_4c_score(cleaned: dict) -> int | None:
    """The 4C mortality score from cleaned fields, or None when an input is missing."""
    rules = isaric4c_rules()
    total = 0
    for name, rule in rules.items():
        if name == "sex":
            points = rule["points"].get(cleaned.get(rule["field"]))
            if points is None:
                return None
            total += points
        elif name == "comorbidities":
            count = sum(1 for f in rule["fields"] if cleaned.get(f) == rule["present"])
            total += _points(rule["bands"], count)
        else:
            value = cleaned.get(rule["field"])
            if value is None:
                return None
            total += _points(rule["bands"], value)
    return total


def _add_4c(rownum: int, cleaned: dict, flags: list[str], problems: list[Problem],
            header: str | None) -> None:
    score = isaric_4c_score(cleaned)
    cleaned["isaric_4c_score"] = score
    supplied = cleaned.get("isaric_4c_score_supplied")
    if score is not None and supplied is not None and supplied != score:
        flags.append("isaric_4c_score_supplied")
        problems.append(Problem(
            rownum, header or "ISARIC 4C mortality score", "ISARIC 4C mortality score", str(supplied),
            f"the supplied score {supplied} differs from the score computed from this row ({score}); "
            "the computed score is used", "warning"))
