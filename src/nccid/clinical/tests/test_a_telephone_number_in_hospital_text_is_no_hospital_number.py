"""The pattern rule (free text holding a word with the letters and digits of the upload's
hospital numbers) compared joined words too: "Example Hospital, tel 0161 276 1234" held
"2761234" and "tel0161276", the pattern of seven-digit and RTH+7 numbers, and every row was
refused. Words are joined for the pattern only as a whole run of words holding digits (with
the word before it), so a number typed spaced is still found."""

import pytest

from nccid.clinical.hospital_numbers import SHAPED_LIKE_A_NUMBER
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, run, template_row, xlsx_bytes

TEMPLATE = get_template("positive")
PHONE = "Example Hospital, tel 0161 276 1234"


def _sheet(numbers: list[str], texts: list[str]) -> bytes:
    return xlsx_bytes(TEMPLATE.headers, [
        template_row(TEMPLATE, person, {"hospital_number": number, "hospital": text, "age": 50})
        for person, number, text in zip(PEOPLE[:len(numbers)], numbers, texts, strict=True)])


@pytest.mark.parametrize("numbers", [["4829131", "5512032", "7301184"],
                                     ["RTH4829131", "RTH5512032", "RTH7301184"]],
                         ids=["7 digits", "RTH+7 digits"])
def test_a_telephone_number_is_kept(numbers):
    result = run(_sheet(numbers, [PHONE] * 3))
    assert result.problems == [] and [r.data["hospital"] for r in result.records] == [PHONE] * 3


def test_a_number_of_the_pattern_typed_spaced_is_still_refused():
    numbers = ["RX42000001", "RX42000002", "RX42000003"]
    result = run(_sheet(numbers, ["Royal Example RX 4200 0009", PHONE, PHONE]))
    assert [(p.row, p.reason) for p in result.problems] == [(2, SHAPED_LIKE_A_NUMBER)]
    assert "RX 4200 0009" not in repr([r.data for r in result.records])
