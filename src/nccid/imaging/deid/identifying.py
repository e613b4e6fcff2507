"""Whether a text value looks identifying: the tests ``nccid deid check`` applies to text, and
de-identification to the free text it keeps (``looks_identifying``). Heuristics, eager: a
person-name shape (FAMILY^GIVEN, or a title before a name), an NHS/CHI number, a postcode, a
street, a telephone number, a date in free text, a UID that is no keyed one. Numbers (a
safe-listed private value, an IS or DS) are tested for NHS/CHI numbers alone
(``number_looks_identifying``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from nccid.identity.keys import PSEUDONYM_PREFIX
from nccid.identity.numbers import looks_like_patient_number

FREE_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
KEYED_UID_ROOT = "2.25."
PSEUDONYM = re.compile(re.escape(PSEUDONYM_PREFIX) + r"[A-Z2-7]{16}")
POSTCODE = re.compile(r"\b[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}\b")
STREET = re.compile(r"\b\d+[A-Za-z]?,? +[A-Za-z' ]+ (Road|Rd|Street|St|Lane|Ln|Close|Avenue|Ave|Drive|Dr|Way|Crescent|Place|Court|Gardens|Terrace|Grove|Hill|Park|Square)\b", re.I)
PHONE = re.compile(r"(?<![\d.])(?:\+44 ?(?:\(0\) ?)?|\(?0)\d{2,4}\)?[ -]?\d{3,4}[ -]?\d{3,4}(?![\d.])")
NAME_IN_TEXT = re.compile(r"[^\W\d_][\w'-]*\^[^\W\d_][\w'-]*")  # FAMILY^GIVEN outside a PN
# A name after a title: "Mrs Jane Quetzal", "Dr. J. Smith", "Prof A B Jones", "MRS JANE QUETZAL",
# "Mrs J QUETZAL". In capitals MR, MS and DR are the modality, multiple sclerosis and digital
# radiography ("MR BRAIN", "MS PROTOCOL", "DR CHEST"): only their mixed-case forms are titles.
# A name in capitals after a title in capitals must be two or three words or initials, the last
# a word: "MRS PRESS" (MR spectroscopy), "MX SCREENING" (mammography), "REV BUILD" are one word
# each. A mixed-case title is no code, so one surname in capitals after it is a name ("Dr
# QUETZAL", the NHS's usual "Mrs J QUETZAL"); but for Rev, also a revision ("Rev AB").
TITLES = ("Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Dame", "Rev")
TITLES_IN_CAPITALS = ("MRS", "MISS", "MX", "PROF", "SIR", "DAME", "REV")
TITLES_BEFORE_A_SURNAME_IN_CAPITALS = tuple(title for title in TITLES if title != "Rev")
_UPPER, _LOWER = "A-Z\u00c0-\u00d6\u00d8-\u00de", "a-z\u00df-\u00f6\u00f8-\u00ff"
_PART = rf"(?:[{_UPPER}]|['\u2019][{_UPPER}]?)[{_LOWER}]+"  # (each starts with no lower case: linear)
_WORD = rf"[{_UPPER}](?:[{_LOWER}]+|{_PART})(?:{_PART})*(?:-[{_UPPER}][{_LOWER}]+)*"  # Jane, O'Neil, McDonald
_CAPS_WORD = rf"[{_UPPER}](?:['\u2019]?[{_UPPER}])+(?:-[{_UPPER}]+)*"  # JANE, O'NEIL
_END = r"(?![\w'\u2019-])"


def _name_after(titles: tuple[str, ...], word: str, before_last: str) -> str:
    """A title, then ``before_last`` (a regex count: ``0,2``) words or initials (``J``,
    ``J.``) and a word."""
    other = rf"(?:(?:{word}|[{_UPPER}])\s+|[{_UPPER}]\.\s*)"
    return rf"\b(?:{'|'.join(titles)})\.?\s+{other}{{{before_last}}}{word}{_END}"


NAME_AFTER_TITLE = re.compile("|".join((
    _name_after(TITLES + TITLES_IN_CAPITALS, _WORD, "0,2"),
    _name_after(TITLES_IN_CAPITALS + ("Rev",), _CAPS_WORD, "1,2"),
    _name_after(TITLES_BEFORE_A_SURNAME_IN_CAPITALS, _CAPS_WORD, "0,2"))))
DATE_IN_TEXT = re.compile(r"(?<!\d)(?:(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])|\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)\d{2})(?!\d)")
UID_IN_TEXT = re.compile(r"(?<![\d.])[0-2](?:\.(?:0|[1-9]\d*)){3,}(?![\d.])")
LEADING_DIGITS = re.compile(r"[+-]?([0-9]+)")
NUMBER_VRS = frozenset({"IS", "DS"})


def text_findings(value: str, vr: str) -> Iterator[tuple[str, str]]:
    """Why ``value`` (one value of a text VR) looks identifying: (reason, value) pairs."""
    uid = UID_IN_TEXT.search(value)
    if uid and not uid.group().startswith((KEYED_UID_ROOT, "1.2.840.10008.")):
        yield "UID-shaped text not under the keyed 2.25 root (an original UID?)", value
    if vr == "PN":
        if not PSEUDONYM.fullmatch(value) and value != "REMOVED":
            yield "person name that is not a pseudonym", value
        return
    if NAME_IN_TEXT.search(value):
        yield "person-name-shaped text (FAMILY^GIVEN)", value
    if NAME_AFTER_TITLE.search(value):
        yield "person-name-shaped text (a title and a name: Mrs Jane Smith)", value
    if looks_like_patient_number(value):
        yield "NHS/CHI-number-shaped digits with a valid check digit", value
    if POSTCODE.search(value.upper()) and not PSEUDONYM.fullmatch(value):
        yield "UK postcode", value
    if STREET.search(value):
        yield "street address", value
    if PHONE.search(value):
        yield "telephone number", value
    if vr in FREE_TEXT_VRS and DATE_IN_TEXT.search(value):
        yield "date in free text", value


@lru_cache(maxsize=65536)
def looks_identifying(text: str) -> bool:
    """True when ``nccid deid check`` would flag ``text`` as free text: one test per distinct
    value (the files of a series repeat their values)."""
    return next(text_findings(text, "UT"), None) is not None


@lru_cache(maxsize=65536)
def number_looks_identifying(value: str, vr: str) -> bool:
    """True when one number or code (an IS, DS or CS value; a binary number written out as a
    DS) holds an NHS/CHI number with a valid check digit: a number's whole part, however
    written (``+9990000018``, ``9990000018.0``, ``9.990000018E9``, leading zeros), a code's
    digits however spaced. Once per distinct value: the files of a series repeat them."""
    value = value.strip(" \x00")
    if vr not in NUMBER_VRS:
        return looks_like_patient_number(value)
    digits = LEADING_DIGITS.match(value)
    wholes = {digits.group(1) if digits else value, _whole_part(value)}
    return any(looks_like_patient_number(whole) for whole in wholes)


def _whole_part(value: str) -> str:
    try:
        number = abs(float(value))
    except ValueError:
        return ""
    return str(int(number)) if number < 1e12 else ""  # (NaN, infinity: no whole part)
