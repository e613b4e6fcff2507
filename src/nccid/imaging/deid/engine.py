"""Table-driven de-identification of DICOM datasets and files (pure: no Django).

One pass over the dataset, nested sequences to any depth, with the action of every tag taken
from the compiled profile (see profile.py). Pixel data is never decoded or transcoded: the
bytes path parses the header only and copies the pixel data element as received.
"""

from __future__ import annotations

import codecs
import math
import mmap
import re
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import date, timedelta
from io import BytesIO

from pydicom import config, dcmread, dcmwrite
from pydicom.charset import default_encoding, python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from nccid.dicomvalues import (
    Memo,
    charset_key,
    element_text,
    is_constant,
    mark_constant,
    value_key,
)
from nccid.identity.keys import SHIFT_BACKWARD, Keyring

from .identifying import (
    FREE_TEXT_VRS,
    code_looks_identifying,
    looks_identifying,
    number_looks_identifying,
)
from .profile import CompiledProfile, SafePrivate, compile_profile, default_safe_private, load_data

# pydicom's value validation warns *and logs* the offending value (an original UID, a name):
# identifiers must never reach the logs, and de-identification judges values itself.
config.settings.reading_validation_mode = config.IGNORE
config.settings.writing_validation_mode = config.IGNORE

# nccid's own Implementation Class UID: made once from a random UUID (PS3.5 B.2, 2.25 root),
# so it collides with no one's; fixed here for good (docs/deidentification.md).
IMPLEMENTATION_CLASS_UID = "2.25.18965770571220411969716205402992663503"
IMPLEMENTATION_VERSION = "NCCID_DEID_1"
PIXEL_DATA = 0x7FE00010
_METHOD_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113103": "Clean Graphics Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs Option",
    "113111": "Retain Safe Private Option",
    "113112": "Retain Institution Identity Option",
}
# Kept text tested as the checker tests it (``looks_identifying``): free text, and the URs the
# profile keeps (Coding Scheme URL, URN Code Value: a code item's own value).
KEPT_TEXT_VRS = FREE_TEXT_VRS | {"UR"}
# A code item's values judged with its Coding Scheme Designator (``code_scheme``): a SNOMED CT
# concept's number is no NHS/CHI number nor a date (``code_looks_identifying``).
CODE_VALUE_TAGS = frozenset({0x00080100, 0x00080119})  # Code Value, Long Code Value
CODING_SCHEME_DESIGNATOR = 0x00080102
_NUMERIC_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"}
_BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}


class DeidError(Exception):
    """A file that cannot be de-identified; the message says why, never an identifier's value."""


@dataclass(frozen=True)
class LinkIds:
    """The original patient identifiers, for linking in memory only: never store or log them."""

    patient_id: str = field(default="", repr=False)
    issuer: str = field(default="", repr=False)
    other_ids: tuple[str, ...] = field(default=(), repr=False)


@dataclass
class DeidResult:
    dataset: Dataset | None = field(repr=False)  # None from by_element (no dataset built)
    sop_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    modality: str
    transfer_syntax: str
    profile: str
    pseudonym: str | None
    held_reason: str | None = None
    dates_shifted: bool = False
    # Kept values dropped for not being on their attribute's list (enumerated values, defined
    # terms) or for looking identifying (kept free text), by top-level tag: counts only.
    off_list: dict[int, int] = field(default_factory=dict)
    original_sop_uid: str = field(default="", repr=False)  # in memory only, never persisted
    link: LinkIds = field(default_factory=LinkIds, repr=False)

    @property
    def held(self) -> bool:
        return self.held_reason is not None

    @property
    def values_off_list(self) -> int:
        return sum(self.off_list.values())


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", errors="replace").strip(" \x00")
    return str(value).strip(" \x00")


class Deidentifier:
    """De-identify DICOM with one compiled profile and the installation's keyring."""

    def __init__(
        self,
        keyring: Keyring,
        profile: str = "retain-dates",
        safe_private: Iterable[SafePrivate] | None = None,
        date_shift: str = SHIFT_BACKWARD,
    ) -> None:
        self.keyring = keyring
        self.date_shift = date_shift  # the installation's scheme (Keyring.date_shift_days)
        self.profile: CompiledProfile = compile_profile(profile)
        self.spec = self.profile.spec
        if "rtnSafePrivOpt" not in self.spec["options"]:
            safe_private = []
        entries = default_safe_private() if safe_private is None else list(safe_private)
        # (group, creator, low byte) -> the VR the value must conform to (see safe_private_value)
        self._safe_private = {(s.group, s.creator.strip().upper(), s.element): s.vr.upper()
                              for s in entries}
        self.safe_creators = frozenset((group, creator) for group, creator, _ in self._safe_private)
        self._burned = load_data("burned_in.json")
        self._device_rules = _compile_device_rules(self._burned.get("device_rules", ()))
        self._dummies = self.profile.rules["dummies"]
        self._listed = listed_values(self.profile.rules)
        free_text = self.profile.rules["kept_free_text"]
        self._text_untested = _keyword_tags(free_text["not_tested"])
        self._text_dummied = _keyword_tags(free_text["dummy_when_emptied"])
        self._well_known = tuple(self.profile.rules["well_known_uid_prefixes"])
        self._method_code_sequence = mark_constant(self._method_codes())

    def _method_codes(self) -> Sequence:
        """Built once and shared by every file this de-identifier writes (never changed)."""
        codes = []
        for value in self.spec["method_codes"]:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = _METHOD_CODES[value]
            codes.append(item)
        return Sequence(codes)

    # ---- public API ---------------------------------------------------------------------------

    def deidentify(self, ds: Dataset, *, pseudonym: str | None, placeholder_id: str = "") -> DeidResult:
        """De-identify ``ds`` in place (pixel data untouched) and return it with its outcome."""
        if pseudonym is None and not placeholder_id:
            raise ValueError("give a pseudonym, or a placeholder_id when the patient is not known yet")
        try:
            original_sop = _text(ds.get("SOPInstanceUID", ""))
        except Exception:
            original_sop = ""
        if not original_sop:
            raise DeidError("no SOP Instance UID: not a storable DICOM instance")
        held = self.burned_in_reason(ds)
        link = self._link_ids(ds)
        off_list = self.clean(ds, pseudonym if pseudonym is not None else placeholder_id)
        self._rebuild_file_meta(ds)
        self._write_markers(ds)
        result = DeidResult(
            dataset=ds, sop_uid=_text(ds.SOPInstanceUID), study_uid=_text(ds.get("StudyInstanceUID", "")),
            series_uid=_text(ds.get("SeriesInstanceUID", "")),
            sop_class_uid=_text(ds.get("SOPClassUID", "")), modality=_text(ds.get("Modality", "")),
            transfer_syntax=str(ds.file_meta.TransferSyntaxUID), profile=self.profile.name,
            pseudonym=None, held_reason=held, off_list=off_list, original_sop_uid=original_sop,
            link=link,
        )
        if pseudonym is not None:
            self.assign_patient(ds, pseudonym, result)
        return result

    def clean(self, ds: Dataset, patient: str) -> dict[int, int]:
        """The walk of ``deidentify``: every element's action, at any depth (no file meta, no
        markers). Each top-level element's outcome depends on that element alone (private
        blocks on their creators), which ``by_element`` relies on. Returns, by top-level tag,
        how many kept code values were emptied for not being on their attribute's list."""
        off_list: dict[int, int] = {}
        with _as_deid_error():
            self._clean(ds, patient, top=True, off_list=off_list)
        return off_list

    def assign_patient(self, ds: Dataset, pseudonym: str, result: DeidResult | None = None) -> None:
        """Finalise a placeholder dataset: the pseudonym in, and the date shift if the profile
        has one. Whatever fails is a DeidError (a pending image's file is refused, not retried)."""
        with _as_deid_error():
            ds.PatientID = pseudonym
            ds.PatientName = pseudonym
            if self.spec.get("date_shift"):
                days = self.keyring.date_shift_days(pseudonym, scheme=self.date_shift)
                _shift_dates(ds, days)
            _reduce_birth_date(ds)
        if result is not None:
            result.pseudonym = pseudonym
            result.dates_shifted = bool(self.spec.get("date_shift"))

    def deidentify_bytes(
        self, data: bytes, *, pseudonym: str | None, placeholder_id: str = ""
    ) -> tuple[bytes, DeidResult]:
        """De-identify an encoded file (any transfer syntax, with or without preamble/meta)."""
        parts, result = self.deidentify_parts(data, pseudonym=pseudonym,
                                              placeholder_id=placeholder_id)
        return b"".join(parts), result

    def deidentify_parts(
        self, data: bytes, *, pseudonym: str | None, placeholder_id: str = "",
        header: tuple[Dataset, int] | None = None,
    ) -> tuple[list, DeidResult]:
        """``deidentify_bytes`` without joining: [encoded header, pixel data element as a
        memoryview of ``data``]. ``header`` is ``(dataset, end offset)`` when the caller has
        already parsed ``data`` up to the Pixel Data (``parse_header``): it is not read again
        and is de-identified in place."""
        ds, pixel = _read_header(data) if header is None else _after_header(data, *header)
        result = self.deidentify(ds, pseudonym=pseudonym, placeholder_id=placeholder_id)
        return _encode_parts(ds, pixel), result

    def assign_patient_bytes(self, data: bytes, pseudonym: str) -> bytes:
        """``assign_patient`` for a de-identified placeholder file kept as bytes (a waiting
        image), its kept values checked again first (``recheck_kept_values``)."""
        ds, pixel = _read_header(data)
        self.recheck_kept_values(ds)
        self.assign_patient(ds, pseudonym)
        return _encode(ds, pixel)

    def recheck_kept_values(self, ds: Dataset) -> None:
        """Bring an already de-identified dataset (a waiting or held file, de-identified when it
        arrived, perhaps by an older release) to the current rules, as far as that can be done
        without the original: the profile's removals and dummies applied to the elements
        present (``_recheck``), the checks of kept values (a kept date, age, code or number
        keeps only its values of their form, a listed code only its listed values, a bare
        NHS/CHI number in a code or number goes), under a date-shifting profile no UTC offset
        left, and the file meta and de-identification markers rewritten as this release
        writes them. Idempotent; a UID is never keyed again nor a date shifted again."""
        with _as_deid_error():
            self._recheck(ds)
            self._rebuild_file_meta(ds)
            self._write_markers(ds)

    def recheck_bytes(self, data: bytes) -> bytes:
        """``recheck_kept_values`` for a de-identified file kept as bytes (a held image)."""
        ds, pixel = _read_header(data)
        self.recheck_kept_values(ds)
        return _encode(ds, pixel)

    def _recheck(self, ds: Dataset) -> None:
        """``_clean``'s actions that are safe to repeat, at any depth: X, Z and D (not on a UID,
        which D keys), and the form checks of kept values. U, the pseudonym and the birth year
        are left to ``assign_patient`` or were done (repeating U would key a keyed UID)."""
        drop_offsets = bool(self.spec.get("date_shift"))
        for elem in list(ds.elements()):
            tag = int(elem.tag)
            if (tag >> 16) & 1 or tag == SPECIFIC_CHARACTER_SET:
                continue
            action = self.profile.action(tag)
            vr = _vr(elem)
            if action in _REPEATABLE and not (action == "D" and vr == "UI"):
                self._apply(ds, elem, tag, action, "", top=False)
            elif action != "K":
                continue
            elif vr == "SQ":
                for item in ds[tag].value or ():
                    self._recheck(item)
            elif vr in _FORMS:
                _keep_values_of_form(ds, elem, tag, vr, self._listed.get(tag))
                if vr == "DT" and drop_offsets:
                    _drop_utc_offsets(ds, tag)
            elif vr in KEPT_TEXT_VRS and tag not in self._text_untested:
                self._drop_identifying_text(ds, elem, tag, vr)

    def burned_in_reason(self, ds: Dataset) -> str | None:
        """Why this image may carry burned-in text, or None. Reasons never quote header values
        other than the modality and SOP class (which identify no one)."""
        rules = self._burned
        seen: dict[int, str] = {}

        def text_of(keyword: str) -> str:
            return _field_text(ds, seen, _BURNED_TAGS[keyword])

        if text_of("BurnedInAnnotation") == "YES":
            return "Burned In Annotation is YES"
        modality = text_of("Modality")
        if modality in rules["modalities"]:
            return f"modality {modality}: {rules['modalities'][modality]}"
        sop_class = element_text(ds, _BURNED_TAGS["SOPClassUID"])
        for prefix, why in rules["sop_class_prefixes"].items():
            if sop_class == prefix or sop_class.startswith(prefix + "."):
                return f"SOP class {prefix}: {why}"  # the list's UID, never the file's
        manufacturer = text_of("Manufacturer")
        for name, why in rules["manufacturers"].items():
            if name in manufacturer:
                return f"manufacturer on the burned-in list: {why}"
        description = text_of("SeriesDescription")
        for words, why in rules["series_description_contains"].items():
            if words in description:
                return f"series description on the burned-in list: {why}"
        image_type = text_of("ImageType")
        for words, why in rules["image_type_contains"].items():
            if words in image_type:
                return f"image type on the burned-in list: {why}"
        for why, conditions in self._device_rules:
            if all(_meets(_field_text(ds, seen, tag), equals, alternatives)
                   for tag, equals, alternatives in conditions):
                return f"device on the burned-in list: {why}"
        return None

    def method_codes(self) -> list[str]:
        return list(self.spec["method_codes"])

    # ---- the walk -----------------------------------------------------------------------------

    def _clean(self, ds: Dataset, patient: str, *, top: bool, references_only: bool = False,
               off_list: dict[int, int] | None = None, owner: int = 0) -> None:
        """``off_list`` counts, under the top-level tag (``owner`` inside sequences), the kept
        code values emptied for not being on their attribute's list."""
        action_for = self.profile.action
        private: list[int] = []
        for elem in list(ds.elements()):
            tag = int(elem.tag)
            here = tag if top else owner
            _check_length(elem)
            if (tag >> 16) & 1:
                private.append(tag)
                continue
            action = action_for(tag)
            if references_only and action != "U" and tag not in self.profile.reference_keep_tags:
                action = "X"  # inside X/Z/U* sequences only the references survive
            dictionary_vr = contradicted_vr(tag, elem.VR)
            if dictionary_vr is not None:
                self._apply_by_dictionary(ds, elem, tag, action, dictionary_vr, patient, top)
                continue
            if action == "K":
                vr = _vr(elem)
                if vr == "SQ":
                    self._clean_items(ds, tag, patient, references_only, off_list, here)
                elif tag == SPECIFIC_CHARACTER_SET:
                    _write_charset_terms(ds, elem)
                elif vr in _FORMS:  # a date, age, code or number with more in it loses it
                    dropped = _keep_values_of_form(ds, elem, tag, vr, self._listed.get(tag))
                    if dropped and off_list is not None:
                        off_list[here] = off_list.get(here, 0) + dropped
                elif vr in KEPT_TEXT_VRS and tag not in self._text_untested:
                    dropped = self._drop_identifying_text(ds, elem, tag, vr)
                    if dropped and off_list is not None:
                        off_list[here] = off_list.get(here, 0) + dropped
                continue
            self._apply(ds, elem, tag, action, patient, top)
        if private:
            self._clean_private(ds, private, references_only)

    def _drop_identifying_text(self, ds: Dataset, elem, tag: int, vr: str) -> int:
        """A kept free-text value that ``nccid deid check`` would flag (a name, an NHS/CHI
        number, ...: ``looks_identifying``, once per distinct value; a code value with its
        item's scheme, ``code_looks_identifying``) is dropped, the others kept; with none left
        an attribute that is Type 1 somewhere gets the VR's dummy, any other is emptied. Returns how many values were dropped."""
        texts, raw = _free_texts(elem, vr)
        if tag in CODE_VALUE_TAGS:
            scheme = code_scheme(ds)
            passed = [t for t in texts if not code_looks_identifying(t, scheme)]
        else:
            passed = [t for t in texts if not looks_identifying(t)]
        if len(passed) == len(texts):
            return 0
        kept = [] if raw else passed  # not ASCII: read as Latin-1, never written back so
        if not kept and tag in self._text_dummied:
            kept = [self._dummies.get(vr, "REMOVED")]
        _set(ds, tag, vr, _one_or_many(kept))
        return len(texts) - len(passed)

    def _clean_items(self, ds: Dataset, tag: int, patient: str, references_only: bool,
                     off_list: dict[int, int] | None = None, owner: int = 0) -> None:
        for item in ds[tag].value or ():
            self._clean(item, patient, top=False, references_only=references_only,
                        off_list=off_list, owner=owner)

    def _apply_by_dictionary(self, ds: Dataset, elem, tag: int, action: str, vr: str,
                             patient: str, top: bool) -> None:
        """An element whose declared VR contradicts its tag's dictionary VR is treated as the
        dictionary says (a date sent as LO is a date): a kept value must be a well-formed value
        of that VR (a date is then shifted like any other) or it is emptied; anything else kept
        is removed, as is a sequence that is not encoded as one (its items cannot be cleaned)."""
        if action == "K":
            if vr not in _TEMPORAL:
                del ds[tag]
            else:
                _set(ds, tag, vr, _one_or_many(_values_of_form(_form_texts(elem), (vr,))))
        elif action == "REF":
            del ds[tag]
        else:
            self._apply(ds, elem, tag, action, patient, top, vr)

    def _apply(self, ds: Dataset, elem, tag: int, action: str, patient: str, top: bool,
               vr: str | None = None) -> None:
        vr = vr or _vr(elem)
        if action == "X":
            del ds[tag]
        elif action == "U":
            self._replace_uids(ds, tag)
        elif action == "REF":
            if vr == "SQ":
                self._clean_items(ds, tag, patient, references_only=True)
            elif vr == "UI":
                self._replace_uids(ds, tag)
            else:
                del ds[tag]
        elif action == "Z":
            _set(ds, tag, vr, None if vr == "SQ" else "")
        elif action == "D":
            self._dummy(ds, tag, vr)
        elif action == "pseudonym":
            if top:
                _set(ds, tag, vr, patient)
            else:
                self._dummy(ds, tag, vr)
        elif action == "year":
            if top:
                _reduce_birth_date(ds)
            else:
                del ds[tag]
        else:  # pragma: no cover - the compiler only emits the actions above
            raise DeidError(f"unknown action {action!r} for tag {tag:08X}")

    def _dummy(self, ds: Dataset, tag: int, vr: str) -> None:
        if vr == "UI":
            self._replace_uids(ds, tag)
        elif vr == "SQ":  # a dummy item would be invented data (docs/decisions.md): removed
            del ds[tag]
        elif vr in _NUMERIC_VRS:
            _set(ds, tag, vr, 0)
        elif vr in _BINARY_VRS:
            _set(ds, tag, vr, b"\x00\x00")
        else:
            _set(ds, tag, vr, self._dummies.get(vr, "REMOVED"))

    def _replace_uids(self, ds: Dataset, tag: int) -> None:
        elem = ds[tag]
        values = [_text(v) for v in _values(elem.value)]
        mapped = [v if (not v or v.startswith(self._well_known)) else self.keyring.uid(v) for v in values]
        ds[tag] = DataElement(tag, "UI", mapped if len(mapped) > 1 else (mapped[0] if mapped else ""))

    def _clean_private(self, ds: Dataset, tags: list[int], references_only: bool) -> None:
        creators: dict[tuple[int, int], str] = {}
        for tag in tags:
            if 0x10 <= tag & 0xFFFF <= 0xFF:
                creators[(tag >> 16, tag & 0xFF)] = _text(ds[tag].value).upper()
        keep_creators: set[tuple[int, int]] = set()
        for tag in tags:
            group, element = tag >> 16, tag & 0xFFFF
            block = element >> 8
            if element >= 0x1000 and not references_only:
                creator = creators.get((group, block))
                safe_vr = None if creator is None else self._safe_private.get((group, creator, element & 0xFF))
                if safe_vr is not None and safe_private_value(ds.get_item(tag), safe_vr):
                    keep_creators.add((group, block))
                    continue
            if element < 0x10 or element > 0xFF:
                del ds[tag]
        for tag in tags:
            element = tag & 0xFFFF
            if 0x10 <= element <= 0xFF and (tag >> 16, element) not in keep_creators:
                del ds[tag]

    # ---- before and after the walk ------------------------------------------------------------

    def _link_ids(self, ds: Dataset) -> LinkIds:
        others = [_text(v) for v in _values(_readable(ds, "OtherPatientIDs"))]
        for item in _readable(ds, "OtherPatientIDsSequence") or ():
            others.append(_text(_readable(item, "PatientID")))
        return LinkIds(
            patient_id=_text(_readable(ds, "PatientID")),
            issuer=_text(_readable(ds, "IssuerOfPatientID")),
            other_ids=tuple(o for o in others if o),
        )

    def _rebuild_file_meta(self, ds: Dataset) -> None:
        """Fresh file meta: no source AE title or private meta information is carried over."""
        old = getattr(ds, "file_meta", None)
        syntax = old.get("TransferSyntaxUID") if old is not None else None
        if syntax is None:
            implicit, little = getattr(ds, "original_encoding", (True, True))
            implicit = True if implicit is None else implicit
            syntax = (ImplicitVRLittleEndian if implicit else
                      ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = UID(str(syntax))
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128  # a preamble may carry anything (TIFF headers, text)

    def _write_markers(self, ds: Dataset) -> None:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = [  # LO values of 64 at most: the last takes the padding,
            f"NCCID {self.profile.name}",  # so the description (cut to 64) is not last
            self.spec["description"][:64],
            "PS3.15 E.1-1 2024b+2026c, keyed UIDs",
        ]
        ds.DeidentificationMethodCodeSequence = self._method_code_sequence
        ds.LongitudinalTemporalInformationModified = self.spec["longitudinal_temporal"]


# ---- helpers ------------------------------------------------------------------------------------


@contextmanager
def _as_deid_error() -> Iterator[None]:
    """Any failure inside as a DeidError naming its type only (pydicom's and Python's
    messages may quote a value)."""
    try:
        yield
    except RecursionError:
        raise DeidError("sequences nested too deeply") from None
    except DeidError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed value, a date out of range, ...
        raise DeidError(f"malformed DICOM element ({type(exc).__name__})") from None


def listed_values(rules: dict) -> dict[int, frozenset[str]]:
    """The values a kept code string may hold, by tag, where a list says: ``rules.json``'s
    enumerated values (PS3.3) and ``defined_terms.json``'s defined terms (Body Part Examined's,
    PS3.16 Annex L). A value off its list is emptied: one set lookup per value, remembered per
    distinct value by ``by_element`` (case is not significant: ``m`` hides nothing ``M``
    would not)."""
    lists = dict(rules["enumerated_values"])
    lists.update({keyword: entry["terms"] for keyword, entry in defined_terms().items()})
    return {tag_for_keyword(keyword): frozenset(v.upper() for v in values)
            for keyword, values in lists.items()}


def code_scheme(item: Dataset) -> str:
    """A code item's Coding Scheme Designator as it stands ("" when absent), read without
    converting it (a value that is not plain ASCII is no SCT)."""
    elem = item.get_item(CODING_SCHEME_DESIGNATOR)
    return "" if elem is None else _text(elem.value)


def _keyword_tags(keywords: list[str]) -> frozenset[int]:
    return frozenset(tag_for_keyword(keyword) for keyword in keywords)


def defined_terms() -> dict[str, dict]:
    """``defined_terms.json`` by keyword (its ``tag``, ``source`` and ``terms``)."""
    return {k: v for k, v in load_data("defined_terms.json").items() if not k.startswith("_")}


_BURNED_TAGS = {keyword: tag_for_keyword(keyword) for keyword in (
    "BurnedInAnnotation", "Modality", "SOPClassUID", "Manufacturer", "SeriesDescription",
    "ImageType")}


def _compile_device_rules(rules) -> list[tuple[str, list[tuple[int, bool, tuple[str, ...]]]]]:
    """``burned_in.json``'s device rules as (why, [(tag, equals, alternatives)]): ``A|B``
    means the field contains A or B, ``=A|B`` that it is A or B (``=`` alone: missing or
    empty); case-insensitive."""
    compiled = []
    for rule in rules:
        conditions = []
        for keyword, pattern in rule["all"].items():
            tag = tag_for_keyword(keyword)
            if tag is None:
                raise ValueError(f"burned_in.json: no DICOM keyword {keyword!r}")
            equals = pattern.startswith("=")
            conditions.append((tag, equals, tuple(pattern.removeprefix("=").upper().split("|"))))
        compiled.append((rule["why"], conditions))
    return compiled


def _field_text(ds: Dataset, seen: dict[int, str], tag: int) -> str:
    """The element's text, upper case (remembered in ``seen`` for the other rules)."""
    text = seen.get(tag)
    if text is None:
        text = seen[tag] = element_text(ds, tag).upper()
    return text


def _meets(text: str, equals: bool, alternatives: tuple[str, ...]) -> bool:
    if equals:
        return text in alternatives
    return any(word in text for word in alternatives)


# tag -> (the dictionary's first VR, every VR it allows), None for a tag it does not know
_DICTIONARY_VRS: dict[int, tuple[str, frozenset[str]] | None] = {}


def _dictionary_vrs(tag: int) -> tuple[str, frozenset[str]] | None:
    known = _DICTIONARY_VRS.get(tag, False)
    if known is False:
        try:
            alternatives = dictionary_VR(tag).split(" or ")
            known = (alternatives[0], frozenset(alternatives))
        except KeyError:
            known = None
        _DICTIONARY_VRS[tag] = known
    return known


def contradicted_vr(tag: int, declared: str | None) -> str | None:
    """The dictionary VR of a public ``tag`` whose ``declared`` VR contradicts it, else None.
    No VR (implicit) and UN defer to the dictionary; a declared VR that is one of the
    dictionary's alternatives (US or SS, OB or OW) agrees; private and unknown tags have no
    dictionary VR to contradict."""
    if declared is None or declared == "UN" or (tag >> 16) & 1:
        return None
    known = _dictionary_vrs(tag)
    if known is None or declared in known[1] or " or " in declared:
        return None  # (an element made in memory may still carry the dictionary's "OB or OW")
    if any(declared in kind and not kind.isdisjoint(known[1]) for kind in _SAME_KIND):
        return None  # a number for a number: kept as declared, as a number is anyway
    return known[0]


# VRs that hold the same kind of value, numbers: one declared for another (Rows as SS, a
# rescale slope as FD) is a sender's slip that hides nothing the dictionary VR would not.
_SAME_KIND = (frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}), frozenset({"IS", "DS"}))


def _readable(ds: Dataset, keyword: str):
    """``ds.get(keyword)``, or DeidError naming the element pydicom cannot read (its message
    may quote the value: only its type is passed on)."""
    try:
        return ds.get(keyword, None)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a malformed element
        raise DeidError(f"unreadable DICOM header: {keyword} ({type(exc).__name__})") from None


def _vr(elem) -> str:
    vr = elem.VR
    if vr is None or vr == "UN" or " or " in str(vr):
        try:
            return dictionary_VR(elem.tag)
        except KeyError:
            return vr or "UN"
    return vr


def _values(value) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace").split("\\")
    return [value]


def _set(ds: Dataset, tag: int, vr: str, value) -> None:
    if vr == "SQ":
        value = Sequence([]) if value is None else value
    elif " or " in vr:
        vr = vr.split(" or ")[0]
    ds[tag] = DataElement(tag, vr, value)


def _shift_dates(ds: Dataset, days: int) -> None:
    """Shift every DA and DT value at any depth by ``days`` (times of day are kept, a DT's UTC
    offset is dropped: a shifted winter date marked +0100 would say its real date was in
    summer, and two studies either side of a clock change would pin the offset down)."""
    for elem in list(ds.elements()):
        tag = int(elem.tag)
        vr = _vr(elem)
        if vr == "SQ":
            for item in ds[tag].value or ():
                _shift_dates(item, days)
        elif vr in ("DA", "DT") and (tag >> 16) & 1 == 0:
            values = [_text(v) for v in _values(ds[tag].value)]
            shifted = [_shift_one(v, days, vr) for v in values]
            if any(s is None for s in shifted):
                del ds[tag]  # cannot shift what cannot be read: removing is the safe choice
            else:
                ds[tag] = DataElement(tag, vr, shifted if len(shifted) > 1 else (shifted[0] if shifted else ""))


def _shift_one(value: str, days: int, vr: str = "DA") -> str | None:
    """A DA or DT value moved by ``days``; None when it is not a well-formed value (a range,
    trailing text), which the caller removes rather than half-shift."""
    if not value:
        return value
    if not _TEMPORAL[vr].fullmatch(value) or len(value) < 8:
        return None
    try:
        moved = date(int(value[0:4]), int(value[4:6]), int(value[6:8])) + timedelta(days=days)
    except (ValueError, OverflowError):  # not a date, or moved before year 1 or after 9999
        return None
    return moved.strftime("%Y%m%d") + _UTC_OFFSET.sub("", value[8:])


_UTC_OFFSET = re.compile(r"[+-][0-9]{4}$")  # a DT's &ZZXX suffix (PS3.5 Table 6.2-1)


def _drop_utc_offsets(ds: Dataset, tag: int) -> None:
    """A kept DT without its values' UTC offsets (as ``_shift_one`` writes a shifted one);
    untouched (as read) when none has one."""
    texts = _form_texts(ds.get_item(tag))
    kept = [_UTC_OFFSET.sub("", t) for t in texts]
    if kept != texts:
        _set(ds, tag, "DT", _one_or_many(kept))


# Actions a recheck repeats: removed, emptied or a dummy again is what it was (a D on a UID
# keys it: never repeated).
_REPEATABLE = frozenset({"X", "Z", "D"})


# Well-formed DA, TM and DT values (PS3.5 6.2): a kept value that is not one may carry text.
_TEMPORAL = {
    "DA": re.compile(r"[0-9]{8}"),
    "TM": re.compile(r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?"),
    "DT": re.compile(r"[0-9]{4}([0-9]{2}([0-9]{2}([0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?)?)?)?"
                     r"([+-][0-9]{4})?"),
}


# The other VRs of a fixed form (PS3.5 6.2), kept values of which are checked alike: an age,
# a code string (upper case by the standard: case hides nothing, so it is not enforced),
# numbers as text (an IS is a signed 32-bit integer; a DS longer than its 16 bytes is common
# and hides no more than digits, so its length is not enforced).
_FORMS = {
    **_TEMPORAL,
    "AS": re.compile(r"[0-9]{3}[DWMYdwmy]"),
    # Equipment writes codes the standard's repertoire and 16 characters do not allow
    # (THORAX-ABDOMEN, CT-MPR, CARDIAC GATING/ECG, CHESTABDOMENPELVIS): a hyphen, slash,
    # dot or plus and up to 64 characters hide nothing a letter or digit could not.
    "CS": re.compile(r"[A-Za-z0-9 _.+/-]{1,64}"),
    "IS": re.compile(r"[+-]?[0-9]{1,12}"),
    "DS": re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"),
}


FORM_VRS = frozenset(_FORMS)


def temporal_ok(text: str, vr: str) -> bool:
    """True when ``text`` is one well-formed DA, TM or DT value (or empty)."""
    return form_ok(text, vr)


def form_ok(text: str, vr: str, allowed: frozenset[str] | None = None) -> bool:
    """True when ``text`` is one well-formed value of ``vr`` (a VR of ``_FORMS``) or empty,
    and one of ``allowed`` when the attribute has a list (``listed_values``)."""
    text = text.strip(" \x00")
    if not text:
        return True
    if allowed is not None and listed_term(text) not in allowed:
        return False
    if _FORMS[vr].fullmatch(text) is None:
        return False
    if vr == "DS" and not math.isfinite(float(text)):
        return False  # 1e400 overflows to Infinity, which no reader (nor JSON) takes
    if vr in _NUMBER_HIDING_VRS and number_looks_identifying(text, vr):
        return False  # a Patient's Weight of 9994200003 (or +9994200003.0): an NHS/CHI number
    return vr != "IS" or -2**31 <= int(text) < 2**31


# Kept values of these VRs may hold a run of 9-10 digits however written (+, .0, E9, leading
# zeros, a code's spaces: the checker's test, number_looks_identifying); one that passes an
# NHS/CHI check is taken for the number it looks like (1 in 11 such runs pass by chance: a
# value of 9-10 digits in a kept code or number is rare enough that dropping it loses next to
# nothing).
_NUMBER_HIDING_VRS = frozenset({"IS", "DS", "CS"})


def form_vrs(tag: int, vr: str) -> tuple[str, ...]:
    """The VRs whose form a kept value of ``tag`` declared as ``vr`` may have: ``vr``'s, and
    for a number declared as the other kind of number (IS for DS, DS for IS: kept as
    declared, see ``contradicted_vr``) the dictionary VR's too: ``2.5`` in a Slice Thickness
    sent as IS is the decimal the attribute holds, and hides nothing a DS would not."""
    known = None if (tag >> 16) & 1 else _dictionary_vrs(tag)
    if known is None or known[0] == vr or known[0] not in _FORMS:
        return (vr,)
    if any(vr in kind and known[0] in kind for kind in _SAME_KIND):
        return (vr, known[0])
    return (vr,)


_NOT_TEXT = "\ufffd"  # stands for a value as read that is not ASCII: of no fixed form


def _free_texts(elem, vr: str) -> tuple[list[str], bool]:
    """A kept free-text element's values (one for ST, LT, UT, whose text may hold a
    backslash, and UR, single-valued), stripped, without pydicom's conversion; and whether they were read as
    Latin-1 from bytes that are not ASCII (any character set's digits, ``^`` and Latin
    letters survive that, which is what the tests look for)."""
    value = elem.value
    if value is None or value == "":
        return [], False
    if isinstance(value, bytes):
        raw = not value.isascii()
        text = value.decode("latin-1")
        texts = [text] if vr in _SINGLE_TEXT_VRS else text.split("\\")
    else:
        raw = False
        texts = [str(value)] if vr in _SINGLE_TEXT_VRS else [str(v) for v in _values(value)]
    return [t.strip(" \x00") for t in texts], raw


_SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UR"})


def _form_texts(elem) -> list[str]:
    """A fixed-form element's values as text, stripped. A value as read that is not ASCII is
    one text of no form (cut at its backslashes, a multi-byte character could be split)."""
    value = elem.value
    if isinstance(elem, RawDataElement) or isinstance(value, bytes):
        if not value:
            return []
        if not isinstance(value, bytes) or not value.isascii():
            return [_NOT_TEXT]
        texts = value.decode("ascii").split("\\")
    else:
        texts = [str(v) for v in _values(value)]
    return [t.strip(" \x00") for t in texts]


def listed_term(text: str) -> str:
    """A value as its list's term is compared: upper case, without spaces (no enumerated value
    or defined term has one: ``WHOLE BODY`` is the term ``WHOLEBODY``)."""
    return text.replace(" ", "").upper()


def _values_of_form(texts: list[str], vrs: tuple[str, ...],
                    allowed: frozenset[str] | None = None) -> list[str]:
    """The values of ``texts`` of their form, in order; a listed one without its spaces (its
    term, in the case it was written)."""
    kept = [t for t in texts if any(form_ok(t, vr, allowed) for vr in vrs)]
    return kept if allowed is None else [t.replace(" ", "") for t in kept]


def _one_or_many(values: list[str]) -> str | list[str]:
    return values if len(values) > 1 else (values[0] if values else "")


def _keep_values_of_form(ds: Dataset, elem, tag: int, vr: str,
                         allowed: frozenset[str] | None) -> int:
    """A kept age, code or number keeps only its values of their form (and one of
    ``allowed`` where a list says: ``listed_values``, written as its term), in order:
    ``ORIGINAL\\PRIMARY\\ABDOM/RAD\\0001`` loses ``ABDOM/RAD``. Emptied when none is left;
    untouched (as read) when all are kept as they are.
    Returns how many values of a listed attribute were dropped (0 for others)."""
    texts = _form_texts(elem)
    kept = _values_of_form(texts, form_vrs(tag, vr), allowed)
    if kept != texts:
        _set(ds, tag, vr, _one_or_many(kept))
    return 0 if allowed is None else len(texts) - len(kept)


SPECIFIC_CHARACTER_SET = 0x00080005


def charset_term(value: str) -> str | None:
    """The Specific Character Set value to write for ``value``: a defined term as is; a
    misspelling pydicom reads as a defined term (``ISO-IR 100``, ``ISO 2022-IR 87``) as that
    term, which the text is encoded in; a value pydicom reads as a Python codec (``utf-8``)
    or one of CS form as is; None for anything else (it may hold anything, and pydicom reads
    the text as if it were absent: the default repertoire)."""
    value = value.strip(" \x00")
    if value in python_encoding:
        return value
    patched = _misspelt_term(value)
    if patched is not None:  # pydicom looks no further (no codec) for these
        return patched if patched in python_encoding else None
    return value if _FORMS["CS"].fullmatch(value) or _is_codec(value) else None


def _misspelt_term(value: str) -> str | None:
    """The term pydicom's ``convert_encodings`` corrects ``value`` to (the same patterns)."""
    if re.match("^ISO[^_]IR", value):
        return "ISO_IR" + value[6:]
    if re.match("^(?=ISO.2022.IR.)(?!ISO 2022 IR )", value):
        return "ISO 2022 IR " + value[12:]
    return None


def _is_codec(value: str) -> bool:
    try:
        codecs.lookup(value)
    except LookupError:
        return False
    return True


def _write_charset_terms(ds: Dataset, elem) -> None:
    """Specific Character Set is not a data value but how the text is encoded: it must go on
    declaring the character set the kept text is in. Each value is written as ``charset_term``
    says; one that is no character set is dropped (the first emptied: the default repertoire,
    as pydicom has read the text). Untouched (as read) when nothing changes."""
    texts = _form_texts(elem)
    terms = [charset_term(t) for t in texts]
    written = ["" if terms[0] is None else terms[0]] if terms else []
    written += [t for t in terms[1:] if t is not None]
    if written != texts:
        _set(ds, SPECIFIC_CHARACTER_SET, "CS", _one_or_many(written))


_PATIENT_BIRTH_DATE = 0x00100030


def _reduce_birth_date(ds: Dataset) -> None:
    """PatientBirthDate to 1 January of its year; an unreadable birth date is emptied. Always
    written as DA (a birth date sent under another VR is still a date, and shifted as one)."""
    if _PATIENT_BIRTH_DATE not in ds:
        return
    text = _text(ds[_PATIENT_BIRTH_DATE].value)
    year = text[:4]
    ds[_PATIENT_BIRTH_DATE] = DataElement(_PATIENT_BIRTH_DATE, "DA",
                                          f"{year}0101" if len(text) >= 4 and year.isdigit() else "")


# ---- bytes in, bytes out ------------------------------------------------------------------------


def parse_header(data: bytes, *, force: bool = True) -> tuple[Dataset, int]:
    """Parse everything before the Pixel Data: (dataset, offset where the header ends).

    pydicom's own exceptions pass through (their messages may quote values: callers must
    not show them)."""
    fp = _reader(data)
    ds = dcmread(fp, force=force, stop_before_pixels=True)
    return ds, fp.tell()


def _reader(data) -> BytesIO | mmap.mmap:
    """A file object over ``data`` that copies nothing up front: bytes are shared by BytesIO,
    a memory-mapped file is its own reader (only the header is ever read from it)."""
    if isinstance(data, mmap.mmap):
        data.seek(0)
        return data
    return BytesIO(data)


def _read_header(data: bytes) -> tuple[Dataset, list | None]:
    """Parse everything before the Pixel Data; return it and the raw pixel element bytes."""
    fp = BytesIO(data)
    try:
        ds = dcmread(fp, force=True, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for bad input; messages may quote values
        raise DeidError(f"not readable as DICOM ({type(exc).__name__} near byte {fp.tell()})") from None
    return _after_header(data, ds, fp.tell())


def _after_header(data: bytes, ds: Dataset, start: int) -> tuple[Dataset, list | None]:
    """The dataset checked, and its pixel data element as parts of the received bytes."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax == DeflatedExplicitVRLittleEndian:
        # The whole dataset is compressed: offsets mean nothing, read it all (rare, small files).
        try:
            ds = dcmread(BytesIO(data), force=True)
        except Exception as exc:
            raise DeidError(f"not readable as deflated DICOM ({type(exc).__name__})") from None
        _check_elements(ds)
        _trim_pixel_surplus(ds)
        return ds, None
    _check_elements(ds)
    if start >= len(data):
        return ds, None
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    little = little is not False
    return ds, _without_surplus(ds, _pixel_element(data, start, bool(implicit), little),
                                bool(implicit), little)


def _without_surplus(ds: Dataset, pixel: memoryview, implicit: bool, little: bool) -> list:
    """Native pixel data cut to the bytes its image needs: anything a file carries after the
    last pixel is not image and is not passed on (nothing is decoded or rewritten)."""
    header = 8 if implicit else 12
    order = "<" if little else ">"
    (length,) = struct.unpack_from(order + "L", pixel, header - 4)
    kept = None if length == 0xFFFFFFFF else image_pixel_bytes(ds, length)
    if not kept or length <= kept:  # compressed, or the header does not say: nothing to cut by
        return [pixel]
    return [bytes(pixel[:header - 4]) + struct.pack(order + "L", kept),
            pixel[header:header + kept]]


def _trim_pixel_surplus(ds: Dataset) -> None:
    """``_without_surplus`` for a dataset read whole (deflated: its pixel data is inside the
    compressed stream): what follows the last pixel is not passed on."""
    tag = next((tag for tag in _PIXEL_DATA_TAGS if tag in ds._dict), PIXEL_DATA)
    elem = ds.get_item(tag)
    value = None if elem is None else elem.value
    if not isinstance(value, bytes) or getattr(elem, "length", 0) == 0xFFFFFFFF:
        return
    kept = image_pixel_bytes(ds, len(value))
    if kept and len(value) > kept:
        ds[tag] = DataElement(tag, elem.VR or "OW", value[:kept])


def image_pixel_bytes(ds: Dataset, length: int) -> int | None:
    """How many of ``length`` native pixel data bytes are image (the rest is a surplus, cut):
    every sample of every pixel, rounded up to even; in YBR_FULL_422 two thirds of that when
    there are fewer bytes (the subsampled image), all of them otherwise (an image
    decompressed from JPEG whose label was kept: its full samples are never cut). None when
    the header does not say."""
    full = _all_samples_bytes(ds)
    if full is None:
        return None
    kept = full // 3 * 2 if length < full and _subsampled_422(ds) else full
    return kept + (kept & 1)  # values have even lengths


def native_pixel_bytes(ds: Dataset) -> int | None:
    """The fewest bytes an uncompressed image needs (the import refuses fewer): Rows ×
    Columns × samples × frames × bits, two thirds of that in YBR_FULL_422 (two chroma
    samples for two pixels, PS3.3 C.7.6.3.1.2); None when the header does not say (missing
    or malformed attributes). pydicom's ``get_expected_length``, except that Samples per
    Pixel and Photometric Interpretation may be missing (one sample, no subsampling) and
    Bits Allocated need not be a multiple of 8 (the image's bits are rounded up to whole
    bytes). The surplus cut is ``image_pixel_bytes``'s: a full-sample image is kept whole."""
    total = _all_samples_bytes(ds)
    return total // 3 * 2 if total is not None and _subsampled_422(ds) else total


def _all_samples_bytes(ds: Dataset) -> int | None:
    """Rows × Columns × samples × frames × bits in whole bytes, or None."""
    try:
        return (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
                * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated) + 7) // 8
    except Exception:  # noqa: BLE001 - pydicom raises several types for malformed values
        return None


def _subsampled_422(ds: Dataset) -> bool:
    try:
        return (int(ds.get("SamplesPerPixel", 1) or 1) == 3
                and ds.get("PhotometricInterpretation") == "YBR_FULL_422")
    except Exception:  # noqa: BLE001 - (malformed: _all_samples_bytes says None first)
        return False


_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


# What a kept safe-listed private value may look like, by the VR the safe list declares: the
# list names numeric parameters, so anything else (text, a sequence, the wrong VR) is removed.
_SAFE_TEXT = {
    "IS": re.compile(r" *[+-]?[0-9]{1,12} *"),
    "DS": re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *"),
    "CS": re.compile(r"[A-Z0-9 _]{0,16}"),
}
_SAFE_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
SAFE_PRIVATE_MAX_BYTES = 1024


def safe_private_value(elem, vr: str) -> bool:
    """True when a safe-listed private element holds what its declared VR allows (numbers, or
    short code strings) and none of its values is an NHS/CHI number: the safe list vouches
    for a vendor's parameter, not for whatever a file puts under its tag (a B value of
    9990000018 is a patient's number)."""
    read = safe_private_values(elem, vr)
    return read is not None and not any(number_looks_identifying(v, read[0]) for v in read[1])


def safe_private_values(elem, vr: str) -> tuple[str, list[str]] | None:
    """``(as, values)`` of a safe-listed private element that holds what its declared VR
    allows: its values as text (binary numbers written out) and the VR to test them as for a
    patient's number (``number_looks_identifying``: DS for binary numbers); None for any
    other value."""
    if elem is None:
        return None
    if not vr:  # an entry that declares no VR: the element's own, if it is a numeric one
        vr = elem.VR if elem.VR in _SAFE_BINARY or elem.VR in _SAFE_TEXT else ""
    if not vr or elem.VR not in (None, "UN", vr):
        return None
    if isinstance(elem, RawDataElement) or isinstance(elem.value, bytes):  # as read, or UN
        raw = elem.value
        if raw is None or getattr(elem, "length", 0) == 0xFFFFFFFF or not isinstance(raw, bytes):
            return None
    elif vr in _SAFE_BINARY and elem.VR == vr:
        numbers = list(_values(elem.value))
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            return None
        return "DS", [str(v) for v in numbers]
    elif vr in _SAFE_TEXT and elem.VR == vr:
        raw = "\\".join(str(v) for v in _values(elem.value)).encode("latin-1", "replace")
    else:
        return None
    if len(raw) > SAFE_PRIVATE_MAX_BYTES:
        return None
    if vr in _SAFE_BINARY:
        code = _SAFE_BINARY[vr]
        size = struct.calcsize(code)
        if len(raw) % size:
            return None
        order = "<" if getattr(elem, "is_little_endian", True) is not False else ">"
        numbers = [v for (v,) in struct.iter_unpack(order + code, raw)]
        return ("DS", [str(v) for v in numbers]) if all(map(math.isfinite, numbers)) else None
    pattern = _SAFE_TEXT.get(vr)
    if pattern is None or not raw.isascii():
        return None
    texts = raw.decode("ascii").rstrip("\x00 ").split("\\")
    return (vr, texts) if all(pattern.fullmatch(v) for v in texts) else None


def _check_length(elem) -> None:
    """A value shorter than its declared length means the file was cut (or lies about a length);
    an undefined length belongs to sequences and encapsulated pixel data only (anything else
    read to a delimiter could hide items in a value that is kept)."""
    if isinstance(elem, RawDataElement) and elem.length == 0xFFFFFFFF \
            and int(elem.tag) not in _PIXEL_DATA_TAGS and _vr(elem) != "SQ":
        tag = int(elem.tag)
        raise DeidError(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) has an undefined length "
                        "but is not a sequence")
    if isinstance(elem, RawDataElement) and elem.value is not None and elem.length != 0xFFFFFFFF \
            and len(elem.value) < elem.length:
        tag = int(elem.tag)
        raise DeidError(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) truncated: "
                        f"{elem.length} bytes declared, {len(elem.value)} present")


def _check_elements(ds: Dataset) -> None:
    for elem in ds._dict.values():  # as read: converting here would fail on a malformed value
        _check_length(elem)
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        raise DeidError("no SOP Class/Instance UID: not a storable DICOM instance (or not DICOM)")


def _pixel_element(data: bytes, start: int, implicit: bool, little: bool) -> memoryview:
    """The bytes of the pixel data element at ``start`` (Pixel Data, Float Pixel Data or
    Double Float Pixel Data), checked against the file's length."""
    end_of_data = len(data)
    order = "<" if little else ">"
    if start + 8 > end_of_data:
        raise DeidError("file truncated inside the Pixel Data header")
    group, element = struct.unpack_from(order + "HH", data, start)
    tag = group << 16 | element
    if tag not in _PIXEL_DATA_TAGS:
        raise DeidError(f"unexpected element ({group:04X},{element:04X}) where Pixel Data should start")
    if implicit:
        (length,) = struct.unpack_from(order + "L", data, start + 4)
        header = 8
    else:
        vr = data[start + 4:start + 6]
        if vr not in (b"OB", b"OW", b"UN", b"OF", b"OD", b"OL", b"OV"):
            raise DeidError("Pixel Data has an invalid VR")
        if start + 12 > end_of_data:
            raise DeidError("file truncated inside the Pixel Data header")
        (length,) = struct.unpack_from(order + "L", data, start + 8)
        header = 12
    position = start + header
    if length != 0xFFFFFFFF:
        end = position + length
        if end > end_of_data:
            raise DeidError(f"Pixel Data truncated: {length} bytes declared, {end_of_data - position} present")
        return memoryview(data)[start:end]
    if tag != PIXEL_DATA:  # float pixels are never encapsulated (PS3.5 A.4)
        raise DeidError(f"({group:04X},{element:04X}) float pixel data has an undefined length")
    # Encapsulated (compressed) pixel data: items until the sequence delimiter, always LE.
    while True:
        if position + 8 > end_of_data:
            raise DeidError("encapsulated Pixel Data truncated (no sequence delimiter)")
        tag_group, tag_element, item_length = struct.unpack_from("<HHL", data, position)
        position += 8
        if (tag_group, tag_element) == (0xFFFE, 0xE0DD):
            return memoryview(data)[start:position]
        if (tag_group, tag_element) != (0xFFFE, 0xE000) or item_length == 0xFFFFFFFF:
            raise DeidError("encapsulated Pixel Data has a malformed item")
        position += item_length
        if position > end_of_data:
            raise DeidError("encapsulated Pixel Data fragment truncated")


def _encode(ds: Dataset, pixel: list | None) -> bytes:
    return b"".join(_encode_parts(ds, pixel))


def _encode_parts(ds: Dataset, pixel: list | None) -> list:
    """The encoded header, then the pixel data element as received (not copied)."""
    try:
        header = _fast_encode(ds)
        if header is None:
            buffer = BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
            header = buffer.getvalue()
    except Exception as exc:
        raise DeidError(f"cannot encode the de-identified file ({type(exc).__name__})") from None
    return [header] if pixel is None else [header, *pixel]


_ENCODED = Memo()  # (tag, VR, implicit, charset, value key) -> the element's bytes


def _encoded_element(elem: DataElement, tag: int, implicit: bool, charset, charset_id) -> bytes:
    """A changed element's bytes as pydicom writes them, memoised on what determines them
    (a study's files share most values: UIDs of the series, markers, emptied fields)."""
    vr = elem.VR
    value = elem.value
    value_id = value_key(value) if vr and " or " not in vr else None
    key = None if value_id is None else (tag, vr, implicit, charset_id, value_id)
    if key is not None:
        known = _ENCODED.get(key)
        if known is not None:
            return known
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, True
    write_data_element(buffer, elem, charset)
    encoded = buffer.getvalue()
    if key is not None:
        _ENCODED.remember(key, encoded, value if is_constant(value) else None)
    return encoded


_META_VRS = {0x00020001: "OB", 0x00020002: "UI", 0x00020003: "UI", 0x00020010: "UI",
             0x00020012: "UI", 0x00020013: "SH"}


def _encode_file_meta(meta: FileMetaDataset) -> bytes | None:
    """The file meta group as ``write_file_meta_info(enforce_standard=True)`` writes it, for
    the meta ``_rebuild_file_meta`` makes; None for anything else (pydicom writes it then)."""
    tags = set(meta.keys())
    if not tags <= set(_META_VRS) or not {0x00020002, 0x00020003, 0x00020010,
                                               0x00020012} <= tags:
        return None
    return _meta_bytes({tag: str(meta[tag].value) for tag in tags - {0x00020001}})


def file_meta_bytes(sop_class_uid: str, sop_uid: str, transfer_syntax: str) -> bytes:
    """The encoded file meta group ``_rebuild_file_meta`` makes for these UIDs."""
    return _meta_bytes({0x00020002: sop_class_uid, 0x00020003: sop_uid,
                        0x00020010: transfer_syntax, 0x00020012: IMPLEMENTATION_CLASS_UID,
                        0x00020013: IMPLEMENTATION_VERSION})


def _meta_bytes(values: dict[int, str]) -> bytes:
    body = [_meta_element(0x00020001, b"\x00\x01", "OB")]
    for tag in sorted(values):
        vr = _META_VRS[tag]
        value = values[tag].encode("ascii")
        if len(value) % 2:
            value += b"\x00" if vr == "UI" else b" "
        body.append(_meta_element(tag, value, vr))
    content = b"".join(body)
    return _meta_element(0x00020000, struct.pack("<L", len(content)), "UL") + content


def _meta_element(tag: int, value: bytes, vr: str) -> bytes:
    if vr == "OB":
        return struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OW", "OV", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _fast_encode(ds: Dataset) -> bytes | None:
    """``dcmwrite(enforce_file_format=True)`` byte for byte, for a dataset read from a
    little-endian file and written back in its own encoding: elements still as read
    (``RawDataElement``) are copied with a struct header instead of pydicom's per-element
    machinery; changed ones are written by pydicom. None when another case applies (the
    caller then uses dcmwrite)."""
    meta = ds.file_meta
    syntax = meta.get("TransferSyntaxUID")
    encoding = getattr(ds, "original_encoding", (None, None))
    if syntax is None or syntax == DeflatedExplicitVRLittleEndian or not syntax.is_transfer_syntax \
            or syntax.is_private or encoding != (syntax.is_implicit_VR, True) \
            or ds.original_character_set != ds._character_set \
            or meta.get("MediaStorageSOPInstanceUID") != ds.get("SOPInstanceUID") \
            or meta.get("MediaStorageSOPClassUID") != ds.get("SOPClassUID") \
            or "PixelData" in ds or len(getattr(ds, "preamble", b"") or b"") != 128:
        return None
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = syntax.is_implicit_VR, True
    fp.write(ds.preamble)
    fp.write(b"DICM")
    meta_bytes = _encode_file_meta(meta)
    if meta_bytes is None:
        write_file_meta_info(fp, deepcopy(meta), enforce_standard=True)  # it may add to the meta
    else:
        fp.write(meta_bytes)
    implicit = syntax.is_implicit_VR
    charset = ds.get("SpecificCharacterSet", default_encoding)
    charset_id = charset_key(charset)
    for tag in sorted(ds.keys()):
        if not encode_element(fp, ds.get_item(tag), tag, implicit, charset, charset_id):
            return None
    return fp.getvalue()


def encode_element(fp: DicomBytesIO, elem, tag: int, implicit: bool, charset, charset_id) -> bool:
    """Write one top-level element as ``dcmwrite`` would (nothing for a retired group
    length); False when pydicom would rewrite it (a long value in a short-VR header: UN)."""
    if tag & 0xFFFF == 0 and tag >> 16 > 6:
        return True  # retired group lengths are not written
    vr = elem.VR
    if not isinstance(elem, RawDataElement):
        fp.write(_encoded_element(elem, tag, implicit, charset, charset_id))
        return True
    if not implicit and (not vr or len(vr) != 2):
        write_data_element(fp, elem, charset)
        return True
    value = elem.value or b""
    undefined = elem.length == 0xFFFFFFFF
    length = 0xFFFFFFFF if undefined else len(value)
    if implicit:
        fp.write(struct.pack("<HHL", tag >> 16, tag & 0xFFFF, length))
    elif vr in _LONG_VRS:
        fp.write(struct.pack("<HH2s2xL", tag >> 16, tag & 0xFFFF, vr.encode(), length))
    elif length > 0xFFFF:
        return False
    else:
        fp.write(struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length))
    fp.write(value)
    if undefined:
        fp.write(_SEQ_DELIMITER)
    return True
