"""Whether a text value looks identifying: the tests ``nccid deid check`` applies to text, and
de-identification to the free text it keeps (``looks_identifying``). Heuristics, eager: a
person-name shape (FAMILY^GIVEN, or a title before a name), an NHS/CHI number, a postcode, a
street, a telephone number, a date in free text, a UID that is no keyed one. Numbers (a
safe-listed private value, an IS or DS) are tested for NHS/CHI numbers alone
(``number_looks_identifying``). A code item's Code Value is tested as free text but for one
exemption: a well-formed SNOMED CT identifier in a SNOMED CT item is a concept's number, not
an NHS/CHI number nor a date (``code_findings``)."""

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
PATIENT_NUMBER = "NHS/CHI-number-shaped digits with a valid check digit"
DATE = "date in free text"
SNOMED_EXEMPT = frozenset({PATIENT_NUMBER, DATE})  # all a string of digits can be flagged for
# DICOM's designators of SNOMED CT (PS3.16 Section 8): SCT, and the retired SRT (SNOMED-RT
# style codes such as R-102CD, never an identifier of digits, but older files send one under it).
SNOMED_SCHEMES = frozenset({"SCT", "SRT"})
SCTID = re.compile(r"[1-9][0-9]{5,17}")
# The partition identifier (the two digits before the check digit): a concept, description or
# relationship, in the short format (0x) or with a 7-digit namespace (1x). Subsets, maps and
# the like are never a code value.
SHORT_PARTITIONS, LONG_PARTITIONS = frozenset({"00", "01", "02"}), frozenset({"10", "11", "12"})
# Verhoeff's dihedral-group check digit, which SNOMED CT identifiers carry.
_VERHOEFF_D = ("0123456789", "1234067895", "2340178956", "3401289567", "4012395678",
               "5987604321", "6598710432", "7659821043", "8765932104", "9876543210")
_VERHOEFF_P = ("0123456789", "1576283094", "5803796142", "8916043527", "9453126870",
               "4286573901", "2793806415", "7046913258")


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
        yield PATIENT_NUMBER, value
    if POSTCODE.search(value.upper()) and not PSEUDONYM.fullmatch(value):
        yield "UK postcode", value
    if STREET.search(value):
        yield "street address", value
    if PHONE.search(value):
        yield "telephone number", value
    if vr in FREE_TEXT_VRS and DATE_IN_TEXT.search(value):
        yield DATE, value


@lru_cache(maxsize=65536)
def looks_identifying(text: str) -> bool:
    """True when ``nccid deid check`` would flag ``text`` as free text: one test per distinct
    value (the files of a series repeat their values)."""
    return next(text_findings(text, "UT"), None) is not None


def code_findings(value: str, vr: str, scheme: str) -> Iterator[tuple[str, str]]:
    """``text_findings`` of a code item's Code Value or Long Code Value, ``scheme`` its item's
    Coding Scheme Designator ("" when absent or removed). A well-formed SNOMED CT identifier in
    a SNOMED CT item is a concept's number: it is not tested for the shapes digits alone can
    take (``SNOMED_EXEMPT``), which standard concepts take by chance (102539006 semi-erect and
    102535000 right lateral decubitus pass an NHS/CHI check, 20721001 reads as a date: 99 of
    the 8,152 SNOMED codes of pydicom's SR dictionary). The other way round, a patient's number
    is a SNOMED CT identifier by chance about 1 time in 330 (a valid Verhoeff digit and a
    partition: 2,753 of the 909,090 valid 999-range NHS numbers; as many of other NHS and of
    CHI numbers), a YYYYMMDD date 1 in 126. Every other test applies, as does the whole test
    to a value of any other scheme, or with spaces."""
    exempt = scheme in SNOMED_SCHEMES and is_snomed_ct_id(value)
    for reason, text in text_findings(value, vr):
        if not (exempt and reason in SNOMED_EXEMPT):
            yield reason, text


@lru_cache(maxsize=65536)
def code_looks_identifying(value: str, scheme: str) -> bool:
    """``looks_identifying`` for a code value in an item of ``scheme`` (``code_findings``),
    once per distinct (value, scheme)."""
    return next(code_findings(value, "UT", scheme), None) is not None


def is_snomed_ct_id(value: str) -> bool:
    """A well-formed SNOMED CT identifier: 6 to 18 digits, no leading zero, the partition of a
    concept, description or relationship (with a namespace, 11 digits at least) and a valid
    Verhoeff check digit."""
    if not SCTID.fullmatch(value):
        return False
    partition = value[-3:-1]
    if partition not in SHORT_PARTITIONS and not (partition in LONG_PARTITIONS and len(value) >= 11):
        return False
    check = 0
    for position, digit in enumerate(reversed(value)):
        check = int(_VERHOEFF_D[check][int(_VERHOEFF_P[position % 8][int(digit)])])
    return check == 0


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
