"""Scan DICOM files for attribute values that still look identifying (``nccid deid check``).

Heuristics, deliberately eager: a finding is a value to look at, not proof of a leak. Values
are never reported in full: ``mask()`` keeps a couple of characters and the length.

Every element of a file is seen, those after the Pixel Data too, without reading the pixels
(the file is memory-mapped and the pixel element stepped over). The header JSON stored
beside each image (DICOM JSON) is checked too: read back into a dataset, it is judged as the
file is, and each number in it that is not finite (``NaN``, ``Infinity``: not strict JSON) is
reported. A warehouse (local or S3) is checked object by object (``check_store``). One limit:
a UID under the keyed ``2.25`` root is taken as keyed. A keyed UID is 128 bits of HMAC, which nothing can
tell from an original UUID-derived ``2.25`` UID without the original it was made from.
"""

from __future__ import annotations

import json
import mmap
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from nccid.warehouse.dicom_json import drop_not_finite

from .engine import (
    CODE_VALUE_TAGS,
    FORM_VRS,
    PIXEL_DATA,
    SPECIFIC_CHARACTER_SET,
    _pixel_element,
    charset_term,
    code_scheme,
    contradicted_vr,
    form_ok,
    form_vrs,
    listed_values,
    parse_header,
    safe_private_values,
)
from .identifying import (
    KEYED_UID_ROOT,
    PATIENT_NUMBER,
    code_findings,
    number_looks_identifying,
    text_findings,
)
from .profile import SafePrivate, compile_profile, default_safe_private, load_data, profile_names

TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC", "PN", "AE", "CS", "UR"}
TEXT_IN_BINARY = re.compile(rb"[\x20-\x7e]{6,}")  # printable runs in a binary value
BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
PIXEL_TAGS = {0x7FE00008, 0x7FE00009, PIXEL_DATA}
BIRTH_DATE_KEYWORDS = {"PatientBirthDate", "PatientBirthDateInAlternativeCalendar"}
UTC_OFFSET = re.compile(r"[+-][0-9]{4}$")
DICOM_JSON_TAG = re.compile(r"[0-9A-Fa-f]{8}")
NOT_FINITE = "number that is not finite (NaN or Infinity: not strict JSON, JSON.parse refuses it)"
DICOM_PREFIX = slice(128, 132)  # where b"DICM" stands in a DICOM file
CHUNK = 1024 * 1024


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
    """``profile``: the de-identification profile the files were made with (an installation's
    own), whose removals are judged; None judges only what every profile removes (files
    from elsewhere)."""

    def __init__(self, safe_private: Iterable[SafePrivate] | None = None,
                 profile: str | None = None) -> None:
        entries = default_safe_private() if safe_private is None else list(safe_private)
        self.safe_private = {(s.group, s.creator.strip().upper(), s.element): s.vr.upper()
                             for s in entries}
        rules = load_data("rules.json")
        self.well_known = tuple(rules["well_known_uid_prefixes"])
        self.uid_keep = set(rules["uid_keep_keywords"])
        self.listed = listed_values(rules)
        names = profile_names() if profile is None else [profile]
        self.profiles = [compile_profile(name) for name in names]
        self.profile = profile
        # A date-shifting profile keeps no UTC offset (a DT's suffix would date the original).
        self.no_utc_offset = profile is not None and bool(self.profiles[0].spec.get("date_shift"))

    def check_dataset(self, ds: Dataset, file: str = "") -> list[Finding]:
        findings: list[Finding] = []
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            findings += self._walk(meta, file, "", meta=True)
        findings += self._walk(ds, file, "")
        return findings

    def check_file(self, path: Path, name: str | None = None) -> list[Finding] | None:
        """Findings for one file (reported as ``name``, default its path), or None when it is
        neither DICOM nor DICOM JSON (skipped). A DICOM file that cannot be read or walked to
        its end is one finding (its name and the error's type, never pydicom's message, which
        may quote a value): what could not be checked may still hold an identifier, and the
        other files are checked all the same."""
        name = str(path) if name is None else name
        if path.suffix.lower() == ".json":
            return self.check_header(path.read_bytes(), name)
        try:
            ds = read_all_but_pixels(path)
        except InvalidDicomError:
            return None
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad input
            return [_unreadable(name, exc)]
        try:
            return self.check_dataset(ds, name)
        except Exception as exc:  # noqa: BLE001
            return [_unreadable(name, exc)]

    def check_header(self, data: bytes, name: str) -> list[Finding] | None:
        """Findings for a header JSON (DICOM JSON, tags as keys), or None for other JSON (a
        clinical record's: skipped): each number that is not finite, then what the file's
        check finds in the header read back as a dataset."""
        try:
            body = json.loads(data)  # (NaN and Infinity read as floats)
        except ValueError:
            return None
        if not body or not isinstance(body, dict) or not all(
                isinstance(k, str) and DICOM_JSON_TAG.fullmatch(k) for k in body):
            return None
        findings = [Finding(name, where, _keyword_at(where), NOT_FINITE, "")
                    for where in drop_not_finite(body)]
        try:
            ds = Dataset.from_json(body)
            return findings + self.check_dataset(ds, name)
        except Exception as exc:  # noqa: BLE001 - pydicom's message may quote the value
            return findings + [Finding(name, "", "", "unreadable DICOM JSON, not checked "
                                       f"({type(exc).__name__})", "")]

    def _walk(self, ds: Dataset, file: str, prefix: str, meta: bool = False) -> list[Finding]:
        found: list[Finding] = []
        creators = {}
        for tag in ds.keys():
            if tag.is_private_creator:
                creators[(tag.group, tag.element)] = str(ds[tag].value or "").strip().upper()
        for tag in sorted(ds.keys()):
            if tag in PIXEL_TAGS:
                continue
            elem = _element(ds, tag)
            where = prefix + f"({tag.group:04X},{tag.element:04X})"
            keyword = keyword_for_tag(tag)
            if tag.is_private:
                if tag.is_private_creator:
                    continue
                creator = creators.get((tag.group, tag.element >> 8), "")
                safe_vr = self.safe_private.get((tag.group, creator, tag.element & 0xFF))
                if safe_vr is None:
                    found.append(Finding(file, where, "(private)",
                                         "private attribute not on the safe list", mask(_str(elem.value))))
                else:
                    found += _safe_private_findings(elem, safe_vr, file, where)
                continue
            removed = None if meta else self._removed(int(tag))
            if removed is not None:
                found.append(Finding(file, where, keyword or "(unknown public)", removed,
                                     mask(_str(elem.value))))
            dictionary_vr = contradicted_vr(int(tag), elem.VR)
            if dictionary_vr is not None:  # de-identification would not keep it as declared
                found.append(Finding(file, where, keyword, f"declared VR {elem.VR} contradicts "
                                     f"the dictionary's {dictionary_vr}", mask(_str(elem.value))))
            if elem.VR == "SQ":
                for index, item in enumerate(elem.value or ()):
                    found += self._walk(item, file, f"{where}[{index}]")
                continue
            scheme = code_scheme(ds) if int(tag) in CODE_VALUE_TAGS else None
            for reason, value in self._value_findings(elem, keyword, scheme):
                found.append(Finding(file, where, keyword, reason, mask(value)))
        return found

    def _removed(self, tag: int) -> str | None:
        """Why an element the profile removes (without one, every profile) is reported (it
        should not be in a de-identified file at all, whatever it holds); None for the others."""
        if tag & 0xFFFF == 0 or any(p.action(tag) != "X" for p in self.profiles):
            return None  # (group lengths: stale, never identifying)
        try:
            dictionary_VR(tag)
        except KeyError:
            return "public attribute the data dictionary does not know (de-identification removes it)"
        if self.profile is not None:
            return f"attribute the {self.profile} profile removes"
        return "attribute de-identification removes"

    def _value_findings(self, elem, keyword: str,
                        scheme: str | None = None) -> Iterator[tuple[str, str]]:
        """``scheme``: a code value's item's Coding Scheme Designator (``code_findings``)."""
        vr = _vr_of(elem)
        if vr in BINARY_VRS:
            yield from _binary_findings(elem.value)
            return
        if vr not in TEXT_VRS | FORM_VRS | {"UI"}:
            return
        for value in _strings(elem.value):
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
            if vr in ("DA", "DT", "TM"):
                if not form_ok(value, vr):
                    yield "date with more in it than a date", value
                elif vr == "DT" and self.no_utc_offset and UTC_OFFSET.search(value):
                    yield f"UTC offset in a date-time ({self.profile} keeps none)", value
                continue
            if int(elem.tag) == SPECIFIC_CHARACTER_SET:  # how text is encoded, not data
                if charset_term(value) is None:
                    yield "Specific Character Set value that is no character set " \
                          "(de-identification drops it)", value
                continue
            if vr in FORM_VRS:
                yield from self._form_findings(int(elem.tag), vr, value)
                continue
            yield from (text_findings(value, vr) if scheme is None
                        else code_findings(value, vr, scheme))

    def _form_findings(self, tag: int, vr: str, value: str) -> Iterator[tuple[str, str]]:
        """An age, code or number: of its VR's form (or, for a number declared as the other
        kind, the dictionary VR's) and, where a list says, one of its enumerated values or
        defined terms (de-identification drops the value otherwise); a number may be an
        NHS/CHI number."""
        allowed = self.listed.get(tag)
        vrs = form_vrs(tag, vr)
        if not any(form_ok(value, v) for v in vrs):
            yield f"{vr} value not of its form (de-identification drops it)", value
        elif not any(form_ok(value, v, allowed) for v in vrs):
            yield ("not one of the attribute's enumerated values or defined terms "
                   "(de-identification drops it)"), value
        if number_looks_identifying(value, vr):
            yield PATIENT_NUMBER, value


def _safe_private_findings(elem, safe_vr: str, file: str, where: str) -> list[Finding]:
    """A safe-listed private element that does not hold what its VR allows, or whose number
    is an NHS/CHI number (tested as a public number is: the list vouches for the parameter,
    not for the value)."""
    read = safe_private_values(elem, safe_vr)
    if read is None:
        return [Finding(file, where, "(private)",
                        f"safe-listed private attribute that is not a {safe_vr or 'number'}",
                        mask(_str(elem.value)))]
    kind, values = read
    return [Finding(file, where, "(private)", PATIENT_NUMBER, mask(value))
            for value in values if number_looks_identifying(value, kind)]


def _binary_findings(value) -> Iterator[tuple[str, str]]:
    """Text inside a binary value (OB, OW, UN...): its printable runs, checked as free text."""
    if not isinstance(value, bytes | bytearray):
        return
    for run in TEXT_IN_BINARY.finditer(value):
        text = run.group().decode("ascii").strip()
        for reason, _ in text_findings(text, "UT"):
            yield f"{reason}, in a binary value", text


def _element(ds: Dataset, tag):
    """The element; as read when pydicom cannot convert a value of a fixed form (a number
    that is not one: checked as text). Any other that cannot be converted raises."""
    try:
        return ds[tag]
    except Exception:
        raw = ds.get_item(tag)
        if _vr_of(raw) in FORM_VRS:
            return raw
        raise


def _vr_of(elem) -> str:
    if elem.VR:
        return elem.VR
    try:  # an element as read from an implicit-VR file
        return dictionary_VR(elem.tag)
    except KeyError:
        return "UN"


def read_all_but_pixels(path: Path) -> Dataset:
    """Every element of a DICOM file, those after the Pixel Data too, without reading the
    pixels: the file is memory-mapped, the header parsed, the pixel element stepped over and
    what follows parsed into the same dataset. InvalidDicomError when it is not DICOM."""
    with open(path, "rb") as file:
        if not file.seek(0, 2):
            raise InvalidDicomError("empty file")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            ds, start = parse_header(data, force=False)
            meta = getattr(ds, "file_meta", None)
            if meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                return dcmread(path)  # compressed whole: offsets mean nothing (rare, small)
            if start < len(data):
                implicit, little = getattr(ds, "original_encoding", (None, None))
                if implicit is None:
                    implicit, little = ds.is_implicit_VR, ds.is_little_endian
                end = _element_end(data, start, bool(implicit), little is not False)
                tail = read_dataset(BytesIO(data[end:]), bool(implicit), little is not False)
                ds._dict.update(tail._dict)
    return ds


def _element_end(data, start: int, implicit: bool, little: bool) -> int:
    """Where the (pixel) element at ``start`` ends, its value not read."""
    order = "<" if little else ">"
    group, element = struct.unpack_from(order + "HH", data, start)
    if group << 16 | element == PIXEL_DATA:
        return start + len(_pixel_element(data, start, implicit, little))
    if implicit:
        (length,) = struct.unpack_from(order + "L", data, start + 4)
        return start + 8 + length
    (length,) = struct.unpack_from(order + "L", data, start + 8)  # OF, OD: long-form header
    return start + 12 + length


def _keyword_at(where: str) -> str:
    """The keyword of the last tag of a tag path such as ``(5200,9230)[0](0018,0050)``."""
    group, element = where[-10:-1].split(",")
    return keyword_for_tag(int(group + element, 16)) or "(unknown)"


def _unreadable(name: str, exc: Exception) -> Finding:
    return Finding(name, "", "", f"unreadable DICOM, not checked ({type(exc).__name__})", "")


def _str(value) -> str:
    if isinstance(value, bytes):
        return value[:64].decode("latin-1", errors="replace")
    return str(value)


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes):  # text as read: a value pydicom could not convert
        return [v.strip(" \x00") for v in value.decode("latin-1").split("\\")]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [("" if v is None else str(v)).strip() for v in value]  # JSON null: empty
    return [_str(value).strip()]


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def check_paths(paths: Iterable[Path], safe_private: Iterable[SafePrivate] | None = None,
                on_file: Callable[[], None] | None = None,
                profile: str | None = None) -> tuple[list[Finding], int, int]:
    """(findings, files scanned, files skipped as not DICOM) for files and folders, removals
    judged against ``profile`` (``Checker``); ``on_file`` is called after each file (a
    progress bar)."""
    checker = Checker(safe_private, profile)
    return _tally((checker.check_file(file) for file in iter_files(paths)), on_file)


def _tally(results: Iterable[list[Finding] | None],
           on_file: Callable[[], None] | None) -> tuple[list[Finding], int, int]:
    """(findings, files checked, files skipped) of each file's result (None: not DICOM)."""
    findings: list[Finding] = []
    scanned = skipped = 0
    for result in results:
        if on_file is not None:
            on_file()
        if result is None:
            skipped += 1
            continue
        scanned += 1
        findings += result
    return findings, scanned, skipped


def check_store(store, keys: Iterable[str], safe_private: Iterable[SafePrivate] | None = None,
                on_file: Callable[[], None] | None = None,
                profile: str | None = None) -> tuple[list[Finding], int, int]:
    """``check_paths`` for objects of a warehouse (``nccid.warehouse.storage.Warehouse``,
    local or S3), reported by key: each DICOM object is checked from its file (a local
    store's) or from a temporary copy (S3: one object at a time, copied only once its first
    bytes say DICOM), each ``.json`` one as a header."""
    checker = Checker(safe_private, profile)
    with tempfile.TemporaryDirectory(prefix="nccid-deid-check-") as folder:

        def result(key: str) -> list[Finding] | None:
            path = _object_file(store, key, Path(folder) / f"object{Path(key).suffix}")
            return None if path is None else checker.check_file(path, key)

        return _tally((result(key) for key in keys), on_file)


def _object_file(store, key: str, copy: Path) -> Path | None:
    """The object's file to check: a local store's own, else ``copy`` written from it (a
    header whole, a DICOM object streamed); None for an object neither DICOM nor JSON."""
    local = store.local_path(key)
    if local is not None:
        return local
    with store.open(key) as source:
        head = source.read(DICOM_PREFIX.stop)
        if copy.suffix.lower() != ".json" and head[DICOM_PREFIX] != b"DICM":
            return None
        with copy.open("wb") as out:
            out.write(head)
            shutil.copyfileobj(source, out, CHUNK)
    return copy
