"""De-identification element by element, remembered across files (pure: no Django).

The files of a series repeat almost every header element: equipment, study and series
UIDs, dates, geometry. The engine's de-identification of a top-level element depends on
that element alone (its tag, VR and value), plus a little context this module puts in the
key: the encoding, the character set, the pseudonym where the element becomes it, with
a date-shifting profile the patient, for a sequence the Pixel Representation (its items'
"US or SS" elements follow it), and for a top-level code value the Coding Scheme Designator
beside it (a SNOMED CT concept is kept where the same digits of another scheme are not). So
each element's outcome (the bytes written, its DICOM JSON, its catalogue text, or nothing
when removed) is remembered, and a file whose elements were all met before is assembled
from the memo without building a dataset.

The outcomes are always the engine's own: elements not met before are de-identified
together by the engine (its walk and the patient's assignment) on a small dataset holding
them and the character set, and the result is remembered. The elements the engine adds or
overwrites whatever the file holds (the pseudonym, the de-identification markers) are kept
per pseudonym, from a whole ``Deidentifier.deidentify`` of such a small dataset.

Files this cannot treat exactly like the engine go the engine's way (``None``): a patient
not known yet, a file held for burned-in text, big-endian or deflated encodings, a private
block whose creator is on the safe list, and top-level elements read without their VR
(implicit VR, or UN) whose VR depends on other elements (US or SS).
"""

from __future__ import annotations

from collections.abc import Hashable
from copy import copy, deepcopy

from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import DeflatedExplicitVRLittleEndian

from nccid.dicomvalues import Memo, charset_key, value_key
from nccid.warehouse.dicom_json import (
    AMBIGUOUS,
    PIXEL_REPRESENTATION,
    SEQUENCE,
    dictionary_kind,
    dump_json,
    element_json,
    pixel_representation_key,
)
from nccid.warehouse.meta import ImageMeta

from .engine import (
    CODE_VALUE_TAGS,
    CODING_SCHEME_DESIGNATOR,
    Deidentifier,
    DeidResult,
    _after_header,
    _text,
    encode_element,
    file_meta_bytes,
)
from .meta import META_TAGS, image_meta_from, meta_text

SPECIFIC_CHARACTER_SET, SOP_CLASS_UID, SOP_INSTANCE_UID = 0x00080005, 0x00080016, 0x00080018
# What the engine writes whatever the file holds: the pseudonym and the markers.
ADDED = (0x00100010, 0x00100020, 0x00120062, 0x00120063, 0x00120064, 0x00280303)
_ADDED = frozenset(ADDED)
MEMO_VALUE_BYTES = 1024  # bigger values are de-identified every time, not remembered
MEMO_ENTRIES = 20_000
_PREAMBLE = b"\x00" * 128 + b"DICM"
_UNSURE = object()  # a Pixel Representation whose key is unsure: its sequences are not remembered

# Of (tag, bytes, DICOM JSON or None, catalogue text or None, values emptied off their list):
# nothing if removed.
Outcome = tuple


def deidentify_by_element(deid: Deidentifier, data, header: tuple[Dataset, int],
                          pseudonym: str | None) -> tuple[list, DeidResult, ImageMeta, bytes] | None:
    """``deid.deidentify_parts`` of a parsed file, plus its catalogue fields and header JSON,
    assembled from remembered elements; None when the file must go the engine's way."""
    ds, pixel = _after_header(data, *header)
    if pseudonym is None or ds._dict.get(SOP_INSTANCE_UID) is None:
        return None
    file_meta = getattr(ds, "file_meta", None)
    syntax = None if file_meta is None else file_meta.get("TransferSyntaxUID")
    if syntax is None or syntax == DeflatedExplicitVRLittleEndian or not syntax.is_transfer_syntax \
            or syntax.is_private or getattr(ds, "original_encoding", None) != (syntax.is_implicit_VR, True):
        return None
    implicit = syntax.is_implicit_VR
    if not _private_blocks_dropped(deid, ds) or deid.burned_in_reason(ds) is not None:
        return None
    original_sop = _text(ds.get("SOPInstanceUID", ""))
    link = deid._link_ids(ds)
    memo = _memo_of(deid)
    charset = ds._dict.get(SPECIFIC_CHARACTER_SET)
    context = (implicit, _identity(charset), pseudonym if deid.spec.get("date_shift") else None)
    if charset is not None and context[1] is None:
        return None
    outcomes: list = []
    missing: list[tuple[int, Hashable | None]] = []
    action = deid.profile.action
    representation = None  # the Pixel Representation's key, once a sequence needs it
    for tag, elem in ds._dict.items():
        if (tag >> 16) & 1 or tag in _ADDED:
            continue  # private: all dropped (checked above); added: from the pseudonym's own
        vr, depends = elem.VR, None
        if vr is None or vr == "SQ" or vr == "UN":  # the dictionary's VR may apply
            kind = dictionary_kind(tag)
            if kind == AMBIGUOUS and vr != "SQ":
                return None  # US or SS here: the engine's way
            if kind == SEQUENCE:
                if representation is None:
                    representation = pixel_representation_key(ds) or _UNSURE
                depends = representation
        elif tag in CODE_VALUE_TAGS:  # judged with the scheme beside it (a SNOMED CT concept)
            depends = _scheme_key(ds)
        identity = None if depends is _UNSURE else _identity(elem)
        key = None if identity is None else (tag, identity, context,
                                             pseudonym if action(tag) == "pseudonym" else None,
                                             depends)
        known = None if key is None else memo.get(key)
        if known is None:
            missing.append((tag, key))
        else:
            outcomes.extend(known)
    present = [(tag, _identity(ds._dict.get(tag))) for tag in ADDED if tag in ds._dict]
    added_key = None if any(i is None for _, i in present) else (context, pseudonym, tuple(present))
    added = None if added_key is None else memo.get(added_key)
    if missing or added is None:
        made = _deidentify_together(deid, ds, [tag for tag, _ in missing], pseudonym, implicit,
                                    with_added=added is None)
        if made is None:
            return None
        for tag, key in missing:
            outcome = made.get(tag, ())
            outcomes.extend(outcome)
            if key is not None:
                memo.remember(key, outcome)
        if added is None:
            added = tuple(o for tag in ADDED for o in made.get(tag, ()))
            if added_key is not None:
                memo.remember(added_key, added)
    outcomes.extend(added)
    return _assemble(deid, outcomes, pixel, syntax, pseudonym, original_sop, link)


def _assemble(deid, outcomes, pixel, syntax, pseudonym, original_sop, link):
    outcomes.sort(key=_by_tag)
    texts = {tag: text for tag, _, _, text, _ in outcomes if text is not None}
    sop_uid, sop_class = texts.get(SOP_INSTANCE_UID, ""), texts.get(SOP_CLASS_UID, "")
    file_meta = file_meta_bytes(sop_class, sop_uid, str(syntax))
    encoded = b"".join([_PREAMBLE, file_meta, *(element for _, element, _, _, _ in outcomes)])
    body = {f"{tag:08X}": value for tag, _, value, _, _ in outcomes if value is not None}
    meta = image_meta_from(texts, str(syntax))
    result = DeidResult(
        dataset=None, sop_uid=sop_uid, study_uid=meta.study_uid, series_uid=meta.series_uid,
        sop_class_uid=sop_class, modality=texts.get(0x00080060, ""), transfer_syntax=str(syntax),
        profile=deid.profile.name, pseudonym=pseudonym,
        dates_shifted=bool(deid.spec.get("date_shift")), original_sop_uid=original_sop, link=link,
        off_list={tag: dropped for tag, _, _, _, dropped in outcomes if dropped})
    parts = [encoded] if pixel is None else [encoded, *pixel]
    return parts, result, meta, dump_json(body)


def _by_tag(outcome) -> int:
    return outcome[0]


def _deidentify_together(deid: Deidentifier, ds: Dataset, tags: list[int], pseudonym: str,
                         implicit: bool, with_added: bool) -> dict[int, Outcome] | None:
    """The engine's outcome of each of ``tags`` (and, ``with_added``, of the added elements),
    de-identified together in a dataset holding only them, the character set and the Pixel
    Representation (and, for the whole ``deidentify``, the SOP UIDs it needs)."""
    small = Dataset()
    # The Pixel Representation decides "US or SS" elements inside sequences, as in the file.
    # A top-level code value is judged with the Coding Scheme Designator beside it.
    context = (SPECIFIC_CHARACTER_SET, PIXEL_REPRESENTATION, CODING_SCHEME_DESIGNATOR,
               SOP_CLASS_UID, SOP_INSTANCE_UID, *ADDED) if with_added \
        else (SPECIFIC_CHARACTER_SET, PIXEL_REPRESENTATION, CODING_SCHEME_DESIGNATOR)
    try:  # (copying a sequence nested deeply exceeds the recursion limit: the engine's way)
        for tag in (*context, *tags):
            elem = ds._dict.get(tag)
            if elem is not None:  # a converted sequence is changed in place: the file keeps its own
                small._dict[tag] = elem if isinstance(elem, RawDataElement) \
                    else deepcopy(elem) if elem.VR == "SQ" else copy(elem)
        small.set_original_encoding(*ds.original_encoding, ds.original_character_set)
        if with_added:
            small.file_meta, small.preamble = ds.file_meta, ds.preamble
            off_list = deid.deidentify(small, pseudonym=pseudonym).off_list
        else:
            off_list = deid.clean(small, pseudonym)
            deid.assign_patient(small, pseudonym)
        return _outcomes(small, (*tags, *ADDED) if with_added else tags, implicit, off_list)
    except Exception:  # noqa: BLE001 - the engine, on the whole file, says why (or succeeds)
        return None


def _outcomes(small: Dataset, tags, implicit: bool,
              off_list: dict[int, int]) -> dict[int, Outcome] | None:
    charset = small.get("SpecificCharacterSet", default_encoding)
    charset_id = charset_key(charset)
    made: dict[int, Outcome] = {}
    for tag in tags:
        elem = small.get_item(tag)
        if elem is None:
            continue  # removed
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, True
        if not encode_element(fp, elem, tag, implicit, charset, charset_id):
            return None  # the engine hands such a file to pydicom's writer
        text = meta_text(small, tag) if tag in META_TAGS else None
        made[tag] = ((tag, fp.getvalue(), element_json(small, tag, charset_id), text,
                      off_list.get(tag, 0)),)
    return made


def _identity(elem) -> Hashable | None:
    """What the engine's outcome for ``elem`` depends on, besides its tag and the context."""
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        value = elem.value
        if value is not None and len(value) > MEMO_VALUE_BYTES:
            return None
        return ("raw", elem.VR, elem.length == 0xFFFFFFFF, value)
    identity = value_key(elem.value)
    return None if identity is None else ("value", elem.VR, identity)


def _scheme_key(ds: Dataset) -> Hashable:
    """What a top-level code value's outcome depends on: the Coding Scheme Designator beside
    it (``_UNSURE`` when too long to remember)."""
    scheme = ds._dict.get(CODING_SCHEME_DESIGNATOR)
    identity = None if scheme is None else _identity(scheme)
    return _UNSURE if scheme is not None and identity is None else ("scheme", identity)


def _private_blocks_dropped(deid: Deidentifier, ds: Dataset) -> bool:
    """True when the engine drops every private element of ``ds`` (no creator on the safe
    list, judged conservatively: a creator that is not plain ASCII counts as listed)."""
    safe = deid.safe_creators  # (group, creator) pairs with an element on the safe list
    if not safe:
        return True
    for tag, elem in ds._dict.items():
        if (tag >> 16) & 1 and 0x10 <= tag & 0xFFFF <= 0xFF:
            raw = elem.value if isinstance(elem, RawDataElement) else None
            if not isinstance(raw, bytes) or not raw.isascii():
                return False
            creator = raw.decode("ascii").strip(" \x00").upper()
            if (tag >> 16, creator) in safe:
                return False
    return True


def _memo_of(deid: Deidentifier) -> Memo:
    memo = getattr(deid, "_element_memo", None)
    if memo is None:
        memo = deid._element_memo = Memo(MEMO_ENTRIES)
    return memo
