"""Hospital numbers where they do not belong: in a free-text cell (the Hospital column, say) or
a value a message would show, a hospital number would reach the main database, and with the
record the warehouse and researchers. Pure: no Django.

Three things are searched for: every hospital number of the same upload (any row's, found
inside any text); in free text, a word with the pattern of letters and digits of the upload's
hospital numbers (another patient's number, of the same form); and the hospital numbers a
site's patients are already linked by, known only as keyed hashes (so only whole words of a
text, or a few of them together, can be compared). Only text holding a digit is compared:
hospital numbers have digits, hospital names rarely do. The pattern joins words only as a whole
run of words holding digits: part of a telephone number ("0161 276 1234") has the pattern of
seven-digit numbers.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

MIN_LENGTH = 4  # shorter numbers match too much ordinary text
SPAN = 3  # words taken together: a number may be typed spaced ("RX 4200 0002")
# Patterns shorter than this are not compared: a site code ("RX101") is five characters.
MIN_PATTERN_LENGTH = 6

OWN_NUMBER = ("holds the row's hospital number: identifiers belong only in their own columns, so "
              "this row was not imported")
ANOTHER_ROWS_NUMBER = ("holds the hospital number of row {row}: identifiers belong only in their "
                       "own columns, so this row was not imported")
SHAPED_LIKE_A_NUMBER = ("holds what looks like a hospital number (its letters and digits follow the "
                        "pattern of this sheet's hospital numbers): identifiers belong only in their "
                        "own columns, so this row was not imported")
A_SITE_PATIENTS_NUMBER = ("holds the hospital number of a patient of this site: identifiers belong "
                          "only in their own columns, so this row was not imported")

_ALPHANUMERIC_RUN = re.compile(r"[^\W_]+")


def folded(text: str) -> str:
    """Case and spaces folded, as the keyed hospital-number hash folds them."""
    return "".join(text.split()).upper()


def pattern(text: str) -> str:
    """Letters as A, digits as 9, anything else as it is: "RX42000002" -> "AA99999999"."""
    return "".join("9" if c.isdigit() else "A" if c.isalpha() else c for c in text)


@dataclass(frozen=True)
class UploadNumbers:
    """The hospital numbers of one upload, folded, each with the first row that gives it, and
    their patterns of letters and digits."""

    first_row: dict[str, int]
    lengths: tuple[int, ...]
    patterns: frozenset[str] = frozenset()
    limit: int = 20
    # Per distinct text, what find() and shaped() said: a column repeats its texts (one
    # hospital's name on every row), and a search costs a few lookups per character.
    _found: dict[str, tuple[str, int] | None] = field(default_factory=dict, compare=False, repr=False)
    _shaped: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, numbers: list[tuple[int, str]], limit: int) -> UploadNumbers:
        """From (row, hospital number) pairs; numbers too short to search or too long to be
        one (the row is refused for its length) are left out."""
        first_row: dict[str, int] = {}
        for row, number in numbers:
            key = folded(number)
            if MIN_LENGTH <= len(key) <= limit:
                first_row.setdefault(key, row)
        patterns = frozenset(p for p in map(pattern, first_row)
                             if len(p) >= MIN_PATTERN_LENGTH and "9" in p)
        return cls(first_row, tuple(sorted({len(k) for k in first_row})), patterns, limit)

    @property
    def shortest(self) -> int:
        """No text shorter than this can hold one of the numbers (or their patterns)."""
        return self.lengths[0] if self.lengths else MIN_LENGTH

    def find(self, text: str) -> tuple[str, int] | None:
        """The first of the numbers found inside ``text`` (spaces and case folded), and its row.
        A few set lookups per character: the upload's numbers have one or two lengths."""
        if not self.lengths or len(text) < self.lengths[0]:
            return None
        if text not in self._found:
            self._found[text] = self._search(text)
        return self._found[text]

    def _search(self, text: str) -> tuple[str, int] | None:
        key = folded(text)
        for length in self.lengths:
            for start in range(len(key) - length + 1):
                row = self.first_row.get(key[start:start + length])
                if row is not None:
                    return key[start:start + length], row
        return None

    def reason(self, text: str, own: str) -> str | None:
        """Why ``text`` cannot be kept nor shown in a row whose hospital number is ``own``, or
        None. Rows are named, never the number."""
        found = self.find(text)
        if found is None:
            return None
        number, row = found
        return OWN_NUMBER if number == folded(own) else ANOTHER_ROWS_NUMBER.format(row=row)

    def shaped(self, text: str) -> bool:
        """Does ``text`` hold a word (or a few) with the pattern of the upload's numbers?"""
        if not self.patterns:
            return False
        if text not in self._shaped:
            self._shaped[text] = any(pattern(part) in self.patterns
                                     for part in pattern_candidates(text, self.limit))
        return self._shaped[text]

    def free_text_reason(self, text: str, own: str) -> str | None:
        """Why free text (or a value a message would show) cannot be kept, or None."""
        return self.reason(text, own) or (SHAPED_LIKE_A_NUMBER if self.shaped(text) else None)


NO_NUMBERS = UploadNumbers({}, ())


def candidates(text: str, limit: int) -> set[str]:
    """The parts of ``text`` that could be a hospital number, to hash: each word, each run of
    up to SPAN words (edge punctuation stripped) and each run of letters and digits, holding a
    digit and of a hospital number's length. Only for the keyed-hash lookup of numbers the site
    links (an exact number): joined words of ordinary text have a number's pattern too often."""
    words = [w.strip(string.punctuation) for w in text.split()]
    parts = {"".join(words[start:end]) for start in range(len(words))
             for end in range(start + 1, min(start + SPAN, len(words)) + 1)}
    parts.update(_ALPHANUMERIC_RUN.findall(text))
    return {p for p in parts if MIN_LENGTH <= len(p) <= limit and any(c.isdigit() for c in p)}


def pattern_candidates(text: str, limit: int) -> set[str]:
    """The parts of ``text`` compared with the upload's patterns: each word and each run of
    letters and digits, and each whole run of words holding digits, joined, alone and after
    the word before it ("RX 4200 0002"). Never part of such a run: "tel 0161 276 1234" is no
    "2761234" nor "tel0161276" (a telephone number had matched seven-digit numbers)."""
    words = [w.strip(string.punctuation) for w in text.split()]
    parts = set(words) | set(_ALPHANUMERIC_RUN.findall(text))
    start = 0
    while start < len(words):
        if not any(c.isdigit() for c in words[start]):
            start += 1
            continue
        end = start
        while end < len(words) and any(c.isdigit() for c in words[end]):
            end += 1
        parts.add("".join(words[start:end]))
        if start > 0:
            parts.add("".join(words[start - 1:end]))
        start = end
    return {p for p in parts if MIN_LENGTH <= len(p) <= limit and any(c.isdigit() for c in p)}
