"""Scan DICOM files for attribute values that still look identifying (``nccid deid check``).

Heuristics, deliberately eager: a finding is a value to look at, not proof of a leak. Values
are never reported in full: ``mask()`` keeps a couple of characters and the length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from nccid.identity.keys import PSEUDONYM_PREFIX
from nccid.identity.numbers import looks_like_patient_number

from .engine import contradicted_vr, safe_private_value, temporal_ok
from .profile import SafePrivate, default_safe_private, load_data

KEYED_UID_ROOT = "2.25."
PSEUDONYM = re.compile(re.escape(PSEUDONYM_PREFIX) + r"[A-Z2-7]{16}")
TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC", "PN", "AE", "CS", "UR"}
FREE_TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC"}
POSTCODE = re.compile(r"\b[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}\b")
STREET = re.compile(r"\b\d+[A-Za-z]?,? +[A-Za-z' ]+ (Road|Rd|Street|St|Lane|Ln|Close|Avenue|Ave|Drive|Dr|Way|Crescent|Place|Court|Gardens|Terrace|Grove|Hill|Park|Square)\b", re.I)
PHONE = re.compile(r"(?<![\d.])(?:\+44 ?|\(?0)\d{2,4}\)?[ -]?\d{3,4}[ -]?\d{3,4}(?![\d.])")
DATE_IN_TEXT = re.compile(r"(?<!\d)(?:(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])|\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)\d{2})(?!\d)")
UID_IN_TEXT = re.compile(r"(?<![\d.])[0-2](?:\.(?:0|[1-9]\d*)){3,}(?![\d.])")
BIRTH_DATE_KEYWORDS = {"PatientBirthDate", "PatientBirthDateInAlternativeCalendar"}


@dataclass(frozen=True)
class Finding:
    file: str
    tag: str  # path of tags from the top, e.g. (0008,1140)[0](0010,0010)
    keyword: str
    reason: str
    masked: str


def mask(value: str) -> str:
    value = value.strip()
    if len(value) <= 2:
        return "*" * len(value)
    return value[:2] + "*" * min(len(value) - 2, 12) + f" ({len(value)} chars)"


class Checker:
    def __init__(self, safe_private: Iterable[SafePrivate] | None = None) -> None:
        entries = default_safe_private() if safe_private is None else list(safe_private)
        self.safe_private = {(s.group, s.creator.strip().upper(), s.element): s.vr.upper()
                             for s in entries}
        rules = load_data("rules.json")
        self.well_known = tuple(rules["well_known_uid_prefixes"])
        self.uid_keep = set(rules["uid_keep_keywords"])

    def check_dataset(self, ds: Dataset, file: str = "") -> list[Finding]:
        findings: list[Finding] = []
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            findings += self._walk(meta, file, "")
        findings += self._walk(ds, file, "")
        return findings

    def check_file(self, path: Path) -> list[Finding] | None:
        """Findings for one file, or None when it is not DICOM (skipped). A DICOM file that
        cannot be read or walked to its end is one finding (its path and the error's type,
        never pydicom's message, which may quote a value): what could not be checked may
        still hold an identifier, and the other files are checked all the same."""
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            return None
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad input
            return [_unreadable(path, exc)]
        try:
            return self.check_dataset(ds, str(path))
        except Exception as exc:  # noqa: BLE001
            return [_unreadable(path, exc)]

    def _walk(self, ds: Dataset, file: str, prefix: str) -> Iterator[Finding]:
        found: list[Finding] = []
        creators = {}
        for elem in ds:
            if elem.tag.is_private_creator:
                creators[(elem.tag.group, elem.tag.element)] = str(elem.value or "").strip().upper()
        for elem in ds:
            tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
            where = prefix + tag
            keyword = elem.keyword or ""
            if elem.tag.is_private:
                if elem.tag.is_private_creator:
                    continue
                creator = creators.get((elem.tag.group, elem.tag.element >> 8), "")
                safe_vr = self.safe_private.get((elem.tag.group, creator, elem.tag.element & 0xFF))
                if safe_vr is None:
                    found.append(Finding(file, where, keyword or "(private)",
                                         "private attribute not on the safe list", mask(_str(elem.value))))
                elif not safe_private_value(elem, safe_vr):
                    found.append(Finding(file, where, keyword or "(private)",
                                         f"safe-listed private attribute that is not a {safe_vr or 'number'}",
                                         mask(_str(elem.value))))
                continue
            dictionary_vr = contradicted_vr(int(elem.tag), elem.VR)
            if dictionary_vr is not None:  # de-identification would not keep it as declared
                found.append(Finding(file, where, keyword, f"declared VR {elem.VR} contradicts "
                                     f"the dictionary's {dictionary_vr}", mask(_str(elem.value))))
            if elem.VR == "SQ":
                for index, item in enumerate(elem.value or ()):
                    found += self._walk(item, file, f"{where}[{index}]")
                continue
            for reason, value in self._value_findings(elem, keyword):
                found.append(Finding(file, where, keyword, reason, mask(value)))
        return found

    def _value_findings(self, elem, keyword: str) -> Iterator[tuple[str, str]]:
        vr = elem.VR
        values = _strings(elem.value) if vr in TEXT_VRS | {"UI", "DA", "DT"} else []
        for value in values:
            if not value:
                continue
            if vr == "UI":
                if (not value.startswith(KEYED_UID_ROOT) and not value.startswith(self.well_known)
                        and keyword not in self.uid_keep):
                    yield "UID not under the keyed 2.25 root (an original UID?)", value
                continue
            if keyword in BIRTH_DATE_KEYWORDS and vr in ("DA", "DT"):
                if value[4:8] not in ("", "0101"):
                    yield "birth date more precise than the year", value
                continue
            if vr in ("DA", "DT"):
                if not temporal_ok(value, vr):
                    yield "date with more in it than a date", value
                continue
            uid = UID_IN_TEXT.search(value)
            if uid and not uid.group().startswith((KEYED_UID_ROOT, *self.well_known)):
                yield "UID-shaped text not under the keyed 2.25 root (an original UID?)", value
            if vr == "PN":
                if not PSEUDONYM.fullmatch(value) and value != "REMOVED":
                    yield "person name that is not a pseudonym", value
                continue
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


def _unreadable(path: Path, exc: Exception) -> Finding:
    return Finding(str(path), "", "", f"unreadable DICOM, not checked ({type(exc).__name__})", "")


def _str(value) -> str:
    if isinstance(value, bytes):
        return value[:64].decode("latin-1", errors="replace")
    return str(value)


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v).strip() for v in value]
    return [_str(value).strip()]


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def check_paths(paths: Iterable[Path], safe_private: Iterable[SafePrivate] | None = None,
                on_file: Callable[[], None] | None = None) -> tuple[list[Finding], int, int]:
    """(findings, files scanned, files skipped as not DICOM) for files and folders; ``on_file``
    is called after each file (a progress bar)."""
    checker = Checker(safe_private)
    findings: list[Finding] = []
    scanned = skipped = 0
    for file in iter_files(paths):
        result = checker.check_file(file)
        if on_file is not None:
            on_file()
        if result is None:
            skipped += 1
            continue
        scanned += 1
        findings += result
    return findings, scanned, skipped
