"""The leak guard (``looks_like_patient_number``) finds every spelling the intake accepts as a
number, and more: any run of spaces, dashes, dots or slashes between the digits."""

from __future__ import annotations

import pytest

from nccid.identity.numbers import is_valid_patient_number, looks_like_patient_number

NUMBER = "9990500010"  # synthetic, in the 999 test range
CHI_WITHOUT_ITS_ZERO = "101010015"  # 0101010015 with the leading zero a spreadsheet dropped


@pytest.mark.parametrize("text", [
    "999  050  0010", "999 - 050 - 0010", "99905 00010", "9 9 9 0 5 0 0 0 1 0",
    "999.050.0010", "999/050/0010", "999 \u2014 050 \u2015 0010", "999\u00a0050\u00a00010",
    "seen 2020-03-04 999 050 0010", "NHS no: 999-050-0010.",
])
def test_any_separators_between_the_digits_are_found(text):
    assert looks_like_patient_number(text)


def test_the_intake_accepts_what_the_guard_finds():
    for text in ("999  050  0010", "999 - 050 - 0010", "99905 00010", "9 9 9 0 5 0 0 0 1 0"):
        assert is_valid_patient_number(text) and looks_like_patient_number(text)


def test_a_chi_missing_its_leading_zero_is_found():
    assert looks_like_patient_number(f"chi {CHI_WITHOUT_ITS_ZERO} noted")
    assert looks_like_patient_number("10 10 10 015")


@pytest.mark.parametrize("text", [
    "1" + NUMBER,                 # part of a longer number
    f"{NUMBER[:9]}1",             # wrong check digit
    "12.5 10.2 8.9 7.1",          # measurements
    "2020-03-04 12:30",           # a date and time
    "ref 123456789",              # 9 digits that are no CHI
    "",
])
def test_other_digits_are_not_taken_for_a_number(text):
    assert not looks_like_patient_number(text)
