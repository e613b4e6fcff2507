"""NHS and CHI number validation. Pure functions; no number is logged or kept here.

NHS numbers (England, Wales, Isle of Man) and Health and Care numbers (Northern Ireland):
10 digits, the last a modulus-11 check digit, issued from ranges at or above 320 000 0000
(999 000 0000 onwards is the test range).

CHI numbers (Scotland): DDMMYY + 4 digits, so every CHI lies below 320 000 0000 and starts
with a valid date. The check digit is modulus 11, or modulus 10 (Luhn) for the newer CHIs
issued where the modulus-11 numbers for a date have run out. The 9th digit is even for
female and odd for male (``chi_sex``); that is information, not a validation rule.

So: a number below 320 000 0000 must start with a valid date and pass modulus 11 or 10; a
number above must pass modulus 11. A number of one repeated digit passes modulus 11 but is
a placeholder ("0000000000", "9999999999"), never a person: it is rejected.

Messages never repeat the number itself, so they are safe to show, log and store.
"""

from __future__ import annotations

import re
from datetime import date

# Spaces of any kind, ASCII and typographic dashes (spreadsheets "autocorrect" hyphens).
_SEPARATORS = re.compile(r"[\s\-\u2010\u2011\u2012\u2013\u2014\u2212]")
_TEN_DIGITS = re.compile(r"[0-9]{10}")
CHI_RANGE_END = 3_200_000_000
TEST_RANGE_START = 9_990_000_000  # 999 000 0000 onwards: never issued to a patient


class InvalidPatientNumber(ValueError):
    """Raised with a plain-English reason that never repeats the number itself."""


def normalise(raw: object) -> str:
    """Ten ASCII digits, spaces and dashes removed.

    Numbers typed as numbers by spreadsheets (9990000018.0) are accepted. A 9-digit value
    gets its leading zero back only when that makes a CHI date (spreadsheets drop the zero
    of people born on days 01-09); any other 9-digit value is a typing error.
    """
    if raw is None or isinstance(raw, bool):
        raise InvalidPatientNumber("is empty" if raw is None else "is not a number")
    if isinstance(raw, float):
        if not raw.is_integer():
            raise InvalidPatientNumber("must be a whole number of 10 digits")
        raw = int(raw)
    text = _SEPARATORS.sub("", str(raw))
    if not text:
        raise InvalidPatientNumber("is empty")
    if not text.isascii() or not text.isdigit():
        raise InvalidPatientNumber("must contain only digits, spaces or dashes")
    if len(text) == 9 and chi_date(f"0{text}") is not None:
        text = "0" + text
    if not _TEN_DIGITS.fullmatch(text):
        raise InvalidPatientNumber(f"must have 10 digits, not {len(text)}")
    return text


def modulus11_ok(digits: str) -> bool:
    """The NHS (and classic CHI) check digit: weights 10..2, 11 - sum mod 11; 10 never issued."""
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = (11 - total % 11) % 11
    return check != 10 and check == int(digits[9])


def modulus10_ok(digits: str) -> bool:
    """Luhn check over all 10 digits (the newer CHI check digit)."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def chi_date(digits: str) -> date | None:
    """The DDMMYY date a CHI number starts with, or None when it is not a valid date.

    The century is not part of a CHI, so the year returned is in 2000-2099 (the permissive
    century: 29 February exists in 2000 but not in 1900). Only day and month are meaningful.
    """
    day, month, year = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    try:
        return date(2000 + year, month, day)
    except ValueError:
        return None


# Kept for callers of the first version; the century is unknown, see ``chi_date``.
chi_birth_date = chi_date


def is_chi_range(digits: str) -> bool:
    """True for 10-digit numbers below the first NHS/H&C allocation (320 000 0000)."""
    return int(digits) < CHI_RANGE_END


def is_test_number(digits: str) -> bool:
    """True for the NHS test range (999 000 0000 - 999 999 9999): valid check digits, issued
    for testing and training only, so on a live installation they mean test data."""
    return int(digits) >= TEST_RANGE_START


def chi_sex(raw: object) -> str:
    """``"female"`` or ``"male"`` from a CHI number's 9th digit (even = female, odd = male).

    Raises InvalidPatientNumber for something that is not a valid CHI number.
    """
    digits = validate_patient_number(raw)
    if not is_chi_range(digits):
        raise InvalidPatientNumber("is an NHS number, not a CHI number: it carries no sex digit")
    return "female" if int(digits[8]) % 2 == 0 else "male"


def _check(digits: str) -> str | None:
    """None when valid, else the reason."""
    if len(set(digits)) == 1:
        return "is a placeholder (all digits the same), not a patient's number"
    if is_chi_range(digits):
        if chi_date(digits) is None:
            return "is in the CHI range but does not start with a valid date (DDMMYY)"
        if not (modulus11_ok(digits) or modulus10_ok(digits)):
            return "fails the CHI check digit (modulus 11 or modulus 10)"
        return None
    if not modulus11_ok(digits):
        return "fails the NHS number check digit (modulus 11)"
    return None


def validate_patient_number(raw: object) -> str:
    """The normalised 10-digit NHS or CHI number, or InvalidPatientNumber with the reason."""
    digits = normalise(raw)
    reason = _check(digits)
    if reason:
        raise InvalidPatientNumber(reason)
    return digits


def is_valid_patient_number(raw: object) -> bool:
    try:
        validate_patient_number(raw)
    except InvalidPatientNumber:
        return False
    return True


def is_valid_nhs_number(raw: object) -> bool:
    """A valid number outside the CHI range (England, Wales, Isle of Man, Northern Ireland)."""
    try:
        digits = validate_patient_number(raw)
    except InvalidPatientNumber:
        return False
    return not is_chi_range(digits)


def is_valid_chi_number(raw: object) -> bool:
    """A valid Scottish CHI number (valid DDMMYY date, modulus 11 or modulus 10)."""
    try:
        digits = validate_patient_number(raw)
    except InvalidPatientNumber:
        return False
    return is_chi_range(digits)


# What may stand between the digits of a number written in free text: any space, dashes of
# every kind, dots, slashes. The guard is wider than ``normalise`` on purpose: it must find a
# number however it was typed, and a false alarm only hides a value.
_GUARD_SEPARATORS = r"\s\-\u2010-\u2015\u2212\ufe58\ufe63\uff0d./\\"
_DIGIT_GROUPS = re.compile(rf"[0-9]+(?:[{_GUARD_SEPARATORS}]+[0-9]+)*")
_DIGITS = re.compile(r"[0-9]+")


def looks_like_patient_number(text: str) -> bool:
    """True when ``text`` holds a valid NHS/CHI number, however it is spaced or punctuated.

    A candidate is whole groups of digits (never part of a longer group) joined by any run
    of separators, 10 digits in all, or 9 that make a CHI once the leading zero is back;
    it counts when it passes a check digit. For leak scanners: audit reasons, free text,
    file warnings.
    """
    return any(_groups_hold_a_number(_DIGITS.findall(run.group()))
               for run in _DIGIT_GROUPS.finditer(text or ""))


def _groups_hold_a_number(groups: list[str]) -> bool:
    for start in range(len(groups)):
        digits = ""
        for group in groups[start:]:
            digits += group
            if len(digits) > 10:
                break
            if len(digits) >= 9 and is_valid_patient_number(digits):
                return True
    return False
