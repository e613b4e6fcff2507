"""Whether a text value looks identifying: the tests ``nccid deid check`` applies to text, and
de-identification to the free text it keeps (``looks_identifying``). Heuristics, eager: a
person-name shape, an NHS/CHI number, a postcode, a street, a telephone number, a date in
free text, a UID that is no keyed one."""

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
DATE_IN_TEXT = re.compile(r"(?<!\d)(?:(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])|\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)\d{2})(?!\d)")
UID_IN_TEXT = re.compile(r"(?<![\d.])[0-2](?:\.(?:0|[1-9]\d*)){3,}(?![\d.])")


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
