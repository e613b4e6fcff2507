"""A free-text cell holding an NHS number, however it is spaced or punctuated, is refused like
the plain spelling, and the number is kept nowhere (not the record, not the problem list)."""

from __future__ import annotations

import pytest

from nccid.clinical.tests.helpers import one
from nccid.clinical.validation import IDENTIFIER_IN_WRONG_COLUMN


@pytest.mark.parametrize("text", ["9990500010", "999  050  0010", "999 - 050 - 0010",
                                  "99905 00010", "9 9 9 0 5 0 0 0 1 0", "999.050.0010"])
def test_a_text_cell_holding_a_spaced_number_is_an_error_and_not_kept(text):
    result, problems = one("hospital", f"Royal {text}")
    assert [p.reason for p in problems if p.column] == [IDENTIFIER_IN_WRONG_COLUMN]
    assert all(p.value == "" for p in problems)
    assert all("050" not in str(r.data) for r in result.records)
