"""NHS and CHI number rules: modulus 11, modulus 10 (newer CHIs), CHI dates, input forms."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nccid.identity.numbers import (
    InvalidPatientNumber,
    chi_sex,
    is_valid_chi_number,
    is_valid_nhs_number,
    looks_like_patient_number,
    validate_patient_number,
)
from nccid.synthetic.people import nhs_test_numbers


def mod11_digit(stem: str) -> int | None:
    """Check digit by the NHS rule, written independently of the code under test."""
    weighted = sum(int(d) * (10 - i) for i, d in enumerate(stem))
    check = 11 - weighted % 11
    return {11: 0, 10: None}.get(check, check)


def luhn_digit(stem: str) -> int:
    digits = [int(d) for d in stem]
    total = 0
    for i, d in enumerate(reversed(digits)):  # the check digit will sit right of these
        total += sum(divmod(d * 2, 10)) if i % 2 == 0 else d
    return (10 - total % 10) % 10


# Worked by hand (see the module doc of numbers.py for the rules).
NHS_VALID = ["9990000018", "999 000 0018", "999-000-0018", " 999 000 0018 ", 9990000018,
             9990000018.0, "999\u2013000\u20130018"]
CHI_MOD11 = "0101010028"   # 01/01/01, modulus-11 check 8; female (9th digit 2)
CHI_LUHN = "0101010015"    # 01/01/01, no modulus-11 digit exists (it would be 10); Luhn 5; male
CHI_LUHN_2 = "0101010023"  # fails modulus 11 (needs 8) but passes Luhn: a newer CHI
LEAP_DAY_2000 = "2902001231"


@pytest.mark.parametrize("raw", NHS_VALID)
def test_valid_nhs_number_in_any_typed_form_normalises_to_ten_digits(raw):
    assert validate_patient_number(raw) == "9990000018"
    assert is_valid_nhs_number(raw) and not is_valid_chi_number(raw)


def test_every_synthetic_999_number_is_valid():
    numbers = nhs_test_numbers(500)
    assert all(validate_patient_number(n) == n for n in numbers)
    assert len(set(numbers)) == 500


@pytest.mark.parametrize(("raw", "reason"), [
    ("9990000019", "fails the NHS number check digit (modulus 11)"),
    ("9990000010", "fails the NHS number check digit (modulus 11)"),
    ("999000001", "must have 10 digits, not 9"),
    ("99900000188", "must have 10 digits, not 11"),
    ("", "is empty"),
    ("  - ", "is empty"),
    (None, "is empty"),
    (True, "is not a number"),
    (9990000018.5, "must be a whole number of 10 digits"),
    ("999000001X", "must contain only digits, spaces or dashes"),
    ("\u0669\u0669\u0669\u0660\u0660\u0660\u0660\u0660\u0661\u0668", "must contain only digits"),
    ("999000001\u00b2", "must contain only digits"),
    ("0000000000", "is a placeholder"),
    ("9999999999", "is a placeholder"),
    ("3333333333", "is a placeholder"),
])
def test_invalid_numbers_are_rejected_with_a_reason_that_never_repeats_the_number(raw, reason):
    with pytest.raises(InvalidPatientNumber) as caught:
        validate_patient_number(raw)
    message = str(caught.value)
    assert reason in message
    digits = "".join(ch for ch in str(raw) if ch.isdigit())
    assert not digits or digits[:6] not in message


@pytest.mark.parametrize("chi", [CHI_MOD11, CHI_LUHN, CHI_LUHN_2, LEAP_DAY_2000])
def test_chi_numbers_with_modulus_11_or_modulus_10_check_digits_are_accepted(chi):
    assert validate_patient_number(chi) == chi
    assert is_valid_chi_number(chi) and not is_valid_nhs_number(chi)


def test_chi_worked_examples_match_the_independent_check_digit_rules():
    assert mod11_digit(CHI_MOD11[:9]) == 8 and luhn_digit(CHI_MOD11[:9]) != 8
    assert mod11_digit(CHI_LUHN[:9]) is None and luhn_digit(CHI_LUHN[:9]) == 5
    assert mod11_digit(CHI_LUHN_2[:9]) == 8 and luhn_digit(CHI_LUHN_2[:9]) == 3


@pytest.mark.parametrize(("chi", "reason"), [
    ("0101010024", "fails the CHI check digit"),             # neither 8 (mod 11) nor 3 (Luhn)
    ("3102851231", "does not start with a valid date"),      # 31 February, modulus-11 valid
    ("2902011237", "does not start with a valid date"),      # 29 February 2001, modulus-11 valid
    ("0013851235", "does not start with a valid date"),      # day 00
    ("1513851234", "does not start with a valid date"),      # month 13
])
def test_chi_range_numbers_need_a_valid_date_and_check_digit(chi, reason):
    with pytest.raises(InvalidPatientNumber, match=reason):
        validate_patient_number(chi)


def test_spreadsheet_dropped_leading_zero_is_restored_only_for_a_chi_date():
    assert validate_patient_number("101010015") == CHI_LUHN
    assert validate_patient_number(101010015.0) == CHI_LUHN
    with pytest.raises(InvalidPatientNumber, match="10 digits, not 9"):
        validate_patient_number("999000001")  # 09/99/.. is no date: a mistyped NHS number


def test_chi_sex_digit_is_a_helper_not_a_rule():
    assert chi_sex(CHI_MOD11) == "female"
    assert chi_sex(CHI_LUHN) == "male"
    assert chi_sex("010 101 0015") == "male"
    with pytest.raises(InvalidPatientNumber, match="not a CHI number"):
        chi_sex("9990000018")


@st.composite
def chi_numbers(draw):
    day = draw(st.integers(1, 28))
    month = draw(st.integers(1, 12))
    year = draw(st.integers(0, 99))
    serial = draw(st.integers(0, 999))
    stem = f"{day:02d}{month:02d}{year:02d}{serial:03d}"
    use_luhn = draw(st.booleans()) or mod11_digit(stem) is None
    return stem + str(luhn_digit(stem) if use_luhn else mod11_digit(stem))


@given(chi_numbers(), st.sampled_from(["", " ", "-"]))
def test_property_constructed_chi_numbers_validate_in_any_separator_form(chi, sep):
    assume(len(set(chi)) > 1)  # the one all-same-digit CHI is a placeholder by design
    typed = sep.join([chi[:3], chi[3:6], chi[6:]])
    assert validate_patient_number(typed) == chi
    assert chi_sex(chi) == ("female" if int(chi[8]) % 2 == 0 else "male")


@st.composite
def nhs_999_numbers(draw):
    stem = "999" + draw(st.text("0123456789", min_size=6, max_size=6))
    check = mod11_digit(stem)
    if check is None:
        stem = stem[:-1] + str((int(stem[-1]) + 1) % 10)
        check = mod11_digit(stem)
    assert check is not None
    return stem + str(check)


@given(nhs_999_numbers(), st.integers(0, 9), st.integers(1, 9))
def test_property_any_single_digit_error_in_a_999_number_is_caught(number, position, delta):
    assert validate_patient_number(number) == number
    digit = (int(number[position]) + delta) % 10
    typo = number[:position] + str(digit) + number[position + 1:]
    with pytest.raises(InvalidPatientNumber):
        validate_patient_number(typo)


@given(nhs_999_numbers(), st.integers(3, 8))
def test_property_swapping_two_different_adjacent_digits_is_caught(number, position):
    a, b = number[position], number[position + 1]
    assume(a != b)
    swapped = number[:position] + b + a + number[position + 2:]
    with pytest.raises(InvalidPatientNumber):
        validate_patient_number(swapped)


def test_leak_scanner_helper_spots_valid_numbers_inside_text_only():
    assert looks_like_patient_number("patient 999 000 0018 seen")
    # Whatever separators the validator accepts, the scanner sees through too.
    assert looks_like_patient_number("999\u00a0000\u00a00018")      # non-breaking spaces
    assert looks_like_patient_number("999\u2013000\u20130018")      # en dashes
    assert not looks_like_patient_number("order 9990000019 shipped")
    assert not looks_like_patient_number("19990000018")  # part of a longer number
