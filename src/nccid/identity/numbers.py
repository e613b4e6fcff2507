"""NHS and CHI number validation. Pure functions; no number is logged or kept here.

NHS numbers (England, Wales, Isle of Man): 10 digits, the last a modulus-11 check digit.
CHI numbers (Scotland): DDMMYY + 4 digits, modulus-11 checked, or modulus-10 (Luhn) for the
newer CHIs issued where the modulus-11 numbers for a date have run out. A 10-digit number
whose first six digits form a valid date is CHI-range (010101 to 311299 in practice); NHS
numbers are issued from ranges whose first three digits are 300 or above with the first two
never forming a valid day, but some overlap exists, so a number valid under either rule is
accepted.
"""

from __future__ import annotations

import re
from datetime import date

_SEPARATORS = re.compile(r"[\s\-]")


class InvalidPatientNumber(ValueError):
    """Raised with a plain-English reason that never repeats the number itself."""


def normalise(raw: object) -> str:
    """Strip spaces and dashes; accept numbers typed as numbers by spreadsheets (9434765919.0)."""
    if raw is None:
        raise InvalidPatientNumber("is empty")
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    text = _SEPARATORS.sub("", str(raw))
    if not text:
        raise InvalidPatientNumber("is empty")
    if not text.isdigit():
        raise InvalidPatientNumber("must contain only digits, spaces or dashes")
    if len(text) == 9:
        # Spreadsheets drop the leading zero of CHI numbers for people born on days 01-09.
        text = "0" + text
    if len(text) != 10:
        raise InvalidPatientNumber(f"must have 10 digits, not {len(text)}")
    return text


def modulus11_ok(digits: str) -> bool:
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
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


def chi_birth_date(digits: str) -> date | None:
    """The DDMMYY date a CHI number starts with, or None when it is not a valid date."""
    day, month, year = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    # 2000-2099 is the permissive century: 29 February exists in 2000 but not in 1900.
    try:
        return date(2000 + year, month, day)
    except ValueError:
        return None


def is_valid_nhs_number(raw: object) -> bool:
    try:
        digits = normalise(raw)
    except InvalidPatientNumber:
        return False
    return modulus11_ok(digits)


def is_valid_chi_number(raw: object) -> bool:
    try:
        digits = normalise(raw)
    except InvalidPatientNumber:
        return False
    return chi_birth_date(digits) is not None and (modulus11_ok(digits) or modulus10_ok(digits))


def validate_patient_number(raw: object) -> str:
    """The normalised 10-digit NHS or CHI number, or InvalidPatientNumber with the reason."""
    digits = normalise(raw)
    if modulus11_ok(digits):
        return digits
    if chi_birth_date(digits) is not None and modulus10_ok(digits):
        return digits
    if chi_birth_date(digits) is not None:
        raise InvalidPatientNumber("fails the NHS/CHI check digit (modulus 11 or modulus 10)")
    raise InvalidPatientNumber("fails the NHS number check digit (modulus 11)")


def looks_like_patient_number(text: str) -> bool:
    """True when ``text`` holds a 10-digit run that passes a check digit (for leak scanners)."""
    for match in re.finditer(r"(?<!\d)(\d{3}[ -]?\d{3}[ -]?\d{4})(?!\d)", text):
        try:
            validate_patient_number(match.group(1))
            return True
        except InvalidPatientNumber:
            continue
    return False
