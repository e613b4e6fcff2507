"""Identifiers a spreadsheet has spoilt. A CSV saved by Excel holds a long number as
1.23457E+11: its digits are lost, so the row is refused (it would be linked by a number no
image carries), saying to format the column as Text. A number cell in the hospital-number
column may have lost leading zeros (00123456 typed becomes 123456): kept, with one warning for
the column. No message repeats the identifier."""

import json

from nccid.clinical.schema import get_template
from nccid.identity.keys import Keyring

from .helpers import PEOPLE, csv_bytes, positive_row, run, xlsx_bytes

HOSPITAL = "Hospital (Internal) Number"
KEYRING = Keyring(b"t" * 32)


def _column(field: str) -> int:
    return [c.field for c in get_template("positive").template_columns()].index(field)


def _row(person, **identifiers) -> list:
    headers, row = positive_row(person, age=50, **identifiers)
    return [str(v) if v is not None else "" for v in row]


def test_a_hospital_number_in_scientific_notation_refuses_its_row():
    headers = get_template("positive").headers
    rows = [_row(PEOPLE[0], hospital_number="1.23457E+11"), _row(PEOPLE[1], hospital_number="9,87654e+11"),
            _row(PEOPLE[2], hospital_number="12E34567")]  # letters and digits: a number, not notation
    result = run(csv_bytes(headers, rows))
    assert result.rejected_rows == {2, 3}
    assert [(p.row, p.column, p.value) for p in result.errors] == [(2, HOSPITAL, ""), (3, HOSPITAL, "")]
    assert all("scientific notation" in p.reason and "Text" in p.reason for p in result.errors)
    shown = json.dumps([p.as_dict() for p in result.problems])
    assert "1.23457" not in shown and "9,87654" not in shown
    assert result.records[0].hospital_hash == KEYRING.hospital_hash("RTEST", "12E34567")


def test_an_nhs_number_in_scientific_notation_says_why():
    headers = get_template("positive").headers
    result = run(csv_bytes(headers, [_row(PEOPLE[0], nhs_number="9.99001E+09")]))
    [error] = result.errors
    assert (error.row, error.column, error.value) == (2, "NHS/CHI Number", "")
    assert "scientific notation" in error.reason and "Text" in error.reason
    assert "9.99001" not in error.message


def test_a_number_cell_of_more_digits_than_excel_keeps_is_refused():
    headers, row = positive_row(PEOPLE[0], age=50, hospital_number=1234567890123456.0)
    result = run(xlsx_bytes(headers, [row]))
    [error] = result.errors
    assert (error.column, error.value) == (HOSPITAL, "")
    assert "15 digits" in error.reason and "Text" in error.reason


def test_number_cells_in_the_hospital_number_column_are_kept_with_one_warning():
    headers = get_template("positive").headers
    rows = [positive_row(PEOPLE[0], age=50, hospital_number=654321)[1],
            positive_row(PEOPLE[1], age=50, hospital_number="00123457")[1],
            positive_row(PEOPLE[2], age=50, hospital_number=123458.0)[1]]
    result = run(xlsx_bytes(headers, rows))
    assert result.errors == [] and len(result.records) == 3
    assert result.records[1].hospital_hash == KEYRING.hospital_hash("RTEST", "00123457")
    letter = chr(ord("A") + _column("hospital_number"))
    [warning] = [w for w in result.sheet_warnings if "leading zero" in w]
    assert f"column {letter} ('{HOSPITAL}')" in warning and "2 rows (first: row 2)" in warning
    assert "format the column as Text" in warning
    assert "654321" not in warning and "123458" not in warning


def test_a_text_hospital_number_column_gets_no_warning():
    headers, row = positive_row(PEOPLE[0], age=50, hospital_number="00123456")
    result = run(xlsx_bytes(headers, [row]))
    assert result.sheet_warnings == [] and result.errors == []
