"""One intake pipeline for every DICOM file, whatever brought it (node, folder, portal).

``ingest(data, site, source)`` checks the bytes are a complete DICOM file, finds the patient
(the site's link of the Patient ID as a hospital number, else an NHS/CHI number with a valid
check digit in Patient ID or Other Patient IDs, else a hospital number to wait for: see
``identify``), de-identifies in memory and then either stores the result in the
warehouse, keeps it encrypted until its clinical record arrives (pending), or holds it for a
data manager's review (suspected burned-in text). Only de-identified bytes are ever written;
waiting ones only encrypted. It knows nothing of sockets or folders, and never raises: a file
it cannot use comes back REJECTED with a reason that names no identifier.

``ingest_many(items, site, source)`` does the same for a batch (the importer's): each file
is parsed once, duplicates are found in a few queries, the images to store are written while
the next ones are de-identified, made durable together and recorded with their receipts in
one transaction (``warehouse.service.ImageBatch``). ``ingest`` is a batch of one (the node's,
whose sender waits for each instance to be stored).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import logging
import os
import re
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.lookups import GreaterThan
from django.utils import timezone
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    CornealTopographyMapStorage,
    EnhancedUSVolumeStorage,
    MRSpectroscopyStorage,
    OphthalmicThicknessMapStorage,
    ParametricMapStorage,
    SegmentationStorage,
    UID_dictionary,
)

from nccid.config import get_settings
from nccid.identity.keys import SEALED_OVERHEAD
from nccid.identity.numbers import (
    InvalidPatientNumber,
    is_test_number,
    validate_patient_number,
)
from nccid.identity.service import get_keyring
from nccid.processes import HOST as _HOST
from nccid.processes import process_gone

from . import deps
from .deid import DeidError
from .deid.by_element import deidentify_by_element
from .deid.engine import file_meta_bytes, native_pixel_bytes, parse_header
from .models import (
    HeldImage,
    HeldStatus,
    PendingFolderMark,
    PendingImage,
    ReceiptStatus,
    RefusedInstance,
    StudyReceipt,
)
from .outcome import IngestOutcome, IngestStatus
from .spool import fsync_dir

log = logging.getLogger("nccid.imaging.intake")

STUDY_INSTANCE_UID = 0x0020000D
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
HEADER_PEEK = 64 * 1024  # bytes read first for a file's meta or header (more if it is longer)
# Elements of a header at every depth, each sequence item counting as one: real headers hold
# hundreds, an enhanced CT's per-frame groups about 40 a frame (40,000 for 1,000 frames). Each
# costs 1.5-2.5 KB to parse and de-identify (an empty item the most): a file at the limit
# takes up to ~250 MB (a million small items took gigabytes).
MAX_HEADER_ELEMENTS = 50_000
# A batch parses its files before it de-identifies any (a few queries for all): it does so in
# parts of about this many elements, each de-identified and its headers let go before the next
# part is parsed. A parsed element holds ~650 bytes: 32 headers at the limit, a few MB of
# files, held 1 GB; a part holds 65 MB at most. Ordinary batches (32 files of a few hundred
# elements) are one part.
PARSED_ELEMENTS = 50_000
# Sequences inside sequences: real files nest a few (an SR's content tree a dozen at most);
# pydicom's parser, the de-identifier and its copies recurse per level, and fail past ~100.
MAX_SEQUENCE_DEPTH = 32
# A deflated dataset is inflated here, never by pydicom (which inflates it whole, at every
# parse): a chunk at a time, to at most this many bytes. Taking it in costs about twice its
# inflated size, so the bound keeps a process under the 500 MB memory target; deflate is used
# for structured reports and the like, and a chest image is a few tens of megabytes at most.
MAX_INFLATED_BYTES = 192 << 20
INFLATE_CHUNK = 1 << 20


class Rejected(Exception):
    """The file cannot be taken in; the message says why and never quotes a value."""


@dataclass(frozen=True)
class Patient:
    pseudonym: str | None  # None until a clinical record names the hospital number
    hospital_hash: str | None


# -- reading --------------------------------------------------------------------------------


def original_sop_uid(data) -> str | None:
    """The SOP Instance UID of a file, found without parsing it (the resume check): group 0002
    is always explicit VR little endian, so the file meta is walked as bytes, then the
    dataset's first elements up to (0008,0018) when it is little endian. The UID comes back
    only when the file meta and the dataset name the same instance; None otherwise (the file
    is then parsed in full and checked, and a mismatch refused)."""
    try:
        if bytes(data[128:132]) != b"DICM":
            return None
        meta, offset = _walk_explicit_meta(data)
        uid, syntax = meta.get(3), meta.get(0x10)
        if not uid or syntax not in _QUICK_SYNTAXES:
            return None
        return uid if _dataset_sop_uid(data, offset, syntax == _IMPLICIT_LE) == uid else None
    except (struct.error, UnicodeDecodeError, ValueError, TypeError):
        return None


_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
# Little-endian syntaxes whose dataset's first elements are read as bytes (not deflated, not
# big endian): the resume check's, the study's from its bytes.
_QUICK_SYNTAXES = frozenset({_IMPLICIT_LE, "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50",
                             "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                             "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
                             "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90",
                             "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5"})


def _uid_text(data, offset: int, length: int) -> str:
    return bytes(data[offset:offset + length]).decode("ascii").strip("\x00 ")


def _walk_explicit_meta(data) -> tuple[dict[int, str], int]:
    """The file meta's UI values by element number, and where the dataset starts."""
    values: dict[int, str] = {}
    offset, end = 132, min(len(data), HEADER_PEEK)
    while offset + 8 <= end:
        group, element = struct.unpack_from("<HH", data, offset)
        if group != 2:
            return values, offset
        vr, length, offset = _element_header(data, offset, implicit=False)
        if not vr.isalpha() or not vr.isupper():
            raise ValueError("not explicit VR")
        if offset + length > end:
            raise ValueError("cut")
        if vr == b"UI":
            values[element] = _uid_text(data, offset, length)
        offset += length
    raise ValueError("no dataset within the first bytes")


class _ByteOrder(NamedTuple):
    """How the byte walk reads an element's header in one byte order: Explicit VR Big Endian
    is laid out as explicit VR little endian, its numbers written the other way round (and
    its items and delimiters too)."""

    explicit: struct.Struct  # (group, element, VR, length) of an explicit VR element
    implicit: struct.Struct  # the same of an implicit VR one (its VR b"")
    item: struct.Struct  # (group, element, length): an item's or a delimiter's
    length: struct.Struct  # a 4-byte length
    short_length: struct.Struct  # a 2-byte one
    tag: struct.Struct  # (group, element)

    @classmethod
    def of(cls, order: str) -> _ByteOrder:
        return cls(*(struct.Struct(order + layout)
                     for layout in ("HH2sH", "HH0sI", "HHI", "I", "H", "HH")))


_LITTLE, _BIG = _ByteOrder.of("<"), _ByteOrder.of(">")


def _element_header(data, offset: int, implicit: bool,
                    order: _ByteOrder = _LITTLE) -> tuple[bytes, int, int]:
    """(VR or b"", value length, where the value starts) of the element at ``offset``."""
    if implicit:
        return b"", order.length.unpack_from(data, offset + 4)[0], offset + 8
    vr = bytes(data[offset + 4:offset + 6])
    if vr in _LONG_LENGTH_VRS:
        return vr, order.length.unpack_from(data, offset + 8)[0], offset + 12
    return vr, order.short_length.unpack_from(data, offset + 6)[0], offset + 8


def _top_level_uid(data, offset: int, implicit: bool, wanted: int) -> str | None:
    """The UID of the top-level element ``wanted`` of the little-endian dataset starting at
    ``offset``, walking the elements before it as bytes (sequences passed over); None when
    absent, cut or not UID-shaped."""
    size = len(data)
    while offset + 12 <= size:
        group, element = struct.unpack_from("<HH", data, offset)
        tag = group << 16 | element
        if tag > wanted:
            return None
        vr, length, offset = _element_header(data, offset, implicit)
        if length == 0xFFFFFFFF or _is_sequence(tag, vr, implicit):
            offset, _ = _sequence_end(data, offset, length, implicit or vr == b"UN", 0, False)
            if offset is None:
                return None
        elif tag == wanted:
            uid = _uid_text(data, offset, length) if offset + length <= size else ""
            return uid if len(uid) <= 64 and _UID_FORM.fullmatch(uid) else None
        else:
            offset += length
    return None


def _dataset_sop_uid(data, offset: int, implicit: bool) -> str | None:
    """(0008,0018) of the dataset starting at ``offset``, walking the elements before it."""
    return _first_uids(data, offset, implicit).get(0x00080018)


def _first_uids(data, offset: int, implicit: bool) -> dict[int, str]:
    """SOP Class (0008,0016) and SOP Instance (0008,0018) UIDs of the little-endian dataset
    starting at ``offset``, walking its elements up to the latter as bytes (within the
    header's first bytes); those not found, or past an undefined length, are left out."""
    found: dict[int, str] = {}
    end = min(len(data), offset + HEADER_PEEK)
    while offset + 8 <= end:
        group, element = struct.unpack_from("<HH", data, offset)
        tag = group << 16 | element
        if tag > 0x00080018:
            break
        _vr, length, offset = _element_header(data, offset, implicit)
        if length == 0xFFFFFFFF or offset + length > end:
            break
        if tag in (0x00080016, 0x00080018):
            found[tag] = _uid_text(data, offset, length)
        offset += length
    return found


_TOO_MANY_ELEMENTS = ("more than {:,} elements in the header (sequence items and their "
                      "elements counted): not an image header")
_TOO_DEEP = "sequences nested more than {} deep in the header: not an image header"


def _check_element_count(data) -> bool | None:
    """Rejected when the dataset has more than MAX_HEADER_ELEMENTS elements before its pixel
    data (at every depth, items included) or sequences nested beyond MAX_SEQUENCE_DEPTH, found
    by walking the bytes before anything is parsed (parsing a million elements costs seconds
    and hundreds of MB; deep nesting, the parser's recursion). ``data`` may be only
    the file's start: the walk stops where it ends, and says whether the header ended within
    it (True: the pixel data was reached; False: not). None when the dataset cannot be walked
    so (still deflated, an unknown transfer syntax, a malformed element): the parser decides,
    and ``_check_complete`` counts after."""
    end, order = _header_end(data)
    return None if end is None else _pixels_at(data, end, order)


# Syntaxes whose dataset the byte walk reads: (implicit VR, byte order). Every standard one but
# deflate, which is inflated first (``inflate_deflated``).
_WALKED = {syntax: (syntax == _IMPLICIT_LE, _LITTLE) for syntax in _QUICK_SYNTAXES} | {
    _EXPLICIT_BE: (False, _BIG)}


def _header_end(data) -> tuple[int | None, _ByteOrder]:
    """Where the walk of the dataset's top-level elements ends (``_walk_elements``), counting
    them, and the byte order walked; None when it cannot be walked as bytes (still deflated, an
    unknown transfer syntax, a malformed element)."""
    try:
        syntax, offset = _syntax_and_dataset_start(data)
    except (struct.error, UnicodeDecodeError, ValueError):
        return None, _LITTLE
    walked = _WALKED.get(syntax)
    if walked is None:
        return None, _LITTLE
    implicit, order = walked
    return _walk_elements(data, offset, implicit, order), order


def _walk_elements(data, offset: int, implicit: bool, order: _ByteOrder = _LITTLE) -> int | None:
    """Walk the top-level elements from ``offset`` (in ``order``): where the pixel data starts
    (``_pixels_at``), else where the elements end: the end of ``data`` when they end with it,
    another offset when the last one is cut (its header, its value or a sequence); None when
    an element is not one (the parser says what it is). Sequences are walked into, as pydicom
    reads them (``_sequence_end``). Rejected beyond MAX_HEADER_ELEMENTS at every depth, or
    MAX_SEQUENCE_DEPTH."""
    # Every file of an import and of the node passes here: one struct call per element.
    unpack, long_length = (order.implicit if implicit else order.explicit).unpack_from, order.length.unpack_from
    size, limit = len(data), MAX_HEADER_ELEMENTS
    count, unsure = 0, False
    while offset + 8 <= size:
        group, element, vr, length = unpack(data, offset)
        if group == 0x7FE0 and element in (0x0008, 0x0009, 0x0010):
            return None if unsure else offset  # the pixel data: the header ends here
        count += 1
        if count > limit:
            raise Rejected(_TOO_MANY_ELEMENTS.format(limit))
        if implicit:
            offset += 8
        elif vr in _LONG_LENGTH_VRS:
            if offset + 12 > size:
                return size + 1  # cut inside its header
            (length,) = long_length(data, offset + 8)
            offset += 12
        elif vr in _SHORT_LENGTH_VRS:
            offset += 8
        else:  # not a VR: the parser says what this is; counted on as pydicom reads it on
            unsure = True
            if not b"AA" <= vr <= b"ZZ":  # (it takes the element as implicit VR)
                (length,) = long_length(data, offset + 4)
                vr = b""
            offset += 8
        if length == 0xFFFFFFFF or _is_sequence(group << 16 | element, vr, implicit):
            offset, count = _sequence_end(data, offset, length, implicit or vr == b"UN", count,
                                          order=order)
            if offset is None:
                return None if unsure else size + 1  # cut inside the sequence
        else:
            offset += length
    return None if unsure else offset


# Tags the dictionary names sequences: pydicom reads them so when their VR is not written
# (implicit VR) or unknown (UN).
_SEQUENCE_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")


def _is_sequence(tag: int, vr: bytes, implicit: bool) -> bool:
    """A defined-length element pydicom reads as a sequence (its items then parsed)."""
    return vr == b"SQ" or ((implicit or vr == b"UN") and tag in _SEQUENCE_TAGS)


def _pixels_at(data, offset: int, order: _ByteOrder = _LITTLE) -> bool:
    """A pixel data element (Pixel Data, Float or Double Float) in ``order`` starts here."""
    return offset + 4 <= len(data) and order.tag.unpack_from(data, offset) in _PIXEL_TAGS


def _syntax_and_dataset_start(data) -> tuple[str | None, int]:
    """The transfer syntax UID and where the dataset starts: walking the file meta to the end
    of group 0002, as pydicom reads it (a wrong group length is common in real files and
    pydicom ignores it); from the group length and a search for (0002,0010) only when the
    meta cannot be walked so."""
    try:
        meta, start = _walk_explicit_meta(data)
        return meta.get(0x10), start
    except ValueError:
        pass
    if bytes(data[132:140]) == b"\x02\x00\x00\x00UL\x04\x00" and hasattr(data, "find"):
        start = 144 + struct.unpack_from("<I", data, 140)[0]
        at = data.find(b"\x02\x00\x10\x00UI", 144, start)
        if at > 0 and start <= len(data):
            (length,) = struct.unpack_from("<H", data, at + 6)
            return _uid_text(data, at + 8, length), start
    meta, start = _walk_explicit_meta(data)
    return meta.get(0x10), start


def _sequence_end(data, offset: int, length: int, implicit: bool, count: int,
                  bounded: bool = True, order: _ByteOrder = _LITTLE) -> tuple[int | None, int]:
    """Where the sequence value starting at ``offset`` (``length`` bytes, or undefined) ends,
    and ``count`` plus its items and their elements at every depth (``bounded``: Rejected
    beyond MAX_HEADER_ELEMENTS, or nested beyond MAX_SEQUENCE_DEPTH). The end is None when the
    bytes end first or an undefined-length value is not items; a defined-length value that is
    not is passed over whole (pydicom says what it is, if it reads it). Walked without
    recursion: no nesting is too deep for it."""
    size = len(data)
    limit, depth = (MAX_HEADER_ELEMENTS, 2 * MAX_SEQUENCE_DEPTH) if bounded else (-1, -1)
    item_header = order.item.unpack_from
    # The values open: (where each ends, None if undefined; its elements are implicit VR).
    open_values: list[tuple[int | None, bool]] = [(_undefined_or(offset, length), implicit)]
    while open_values:
        end, implicit = open_values[-1]
        if end is not None and offset >= end:
            if offset > end:  # an element ran past it
                offset = _past_defined(open_values)
                if offset is None:
                    return None, count
                continue
            open_values.pop()
            continue
        if offset + 8 > size:
            offset = _past_defined(open_values)
            if offset is None:
                return None, count
            continue
        group, element, length = item_header(data, offset)
        if group == 0xFFFE:
            offset += 8
            if element == 0xE000:  # an item
                count += 1
                open_values.append((_undefined_or(offset, length), implicit))
            elif element in (0xE00D, 0xE0DD):  # item or sequence delimiter
                open_values.pop()
            else:
                offset = _past_defined(open_values)
                if offset is None:
                    return None, count
                continue
        else:
            count += 1
            if offset + 12 > size:
                offset = _past_defined(open_values)
                if offset is None:
                    return None, count
                continue
            vr, length, offset = _element_header(data, offset, implicit, order)
            if length == 0xFFFFFFFF or _is_sequence(group << 16 | element, vr, implicit):
                open_values.append((_undefined_or(offset, length), implicit or vr == b"UN"))
                if len(open_values) >= depth >= 0:  # (a sequence and an item: a level)
                    raise Rejected(_TOO_DEEP.format(MAX_SEQUENCE_DEPTH))
            else:
                offset += length
        if count > limit >= 0:
            raise Rejected(_TOO_MANY_ELEMENTS.format(limit))
    return offset, count


def _undefined_or(offset: int, length: int) -> int | None:
    """Where a value of ``length`` starting at ``offset`` ends; None for an undefined length."""
    return None if length == 0xFFFFFFFF else offset + length


def _past_defined(open_values: list) -> int | None:
    """After a malformed or cut value: the end of the innermost defined-length value around it
    (the walk goes on from there, the values inside it closed), else None."""
    while open_values:
        end, _ = open_values.pop()
        if end is not None:
            return end
    return None


# Explicit VRs with a 4-byte length (PS3.5 7.1.2), and the others.
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC",
                              b"UN", b"UR", b"UT", b"UV"})
_SHORT_LENGTH_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL",
                               b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM",
                               b"UI", b"UL", b"US"})


_DEFLATED = "1.2.840.10008.1.2.1.99"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"


_PREAMBLE = b"\x00" * 128
_UID_FORM = re.compile(r"[0-9]+(\.[0-9]+)*")
NOT_DICOM = ("not a DICOM file (no 'DICM' marker at byte 128, and no DICOM dataset naming its "
             "SOP Class and Instance UIDs at its start)")


def as_part10(data):
    """``data`` as a DICOM Part 10 file. A file without the 128-byte preamble gets one; a bare
    dataset (no preamble, no file meta, as older tools and some archives keep them) gets both:
    the file meta its dataset implies, its own SOP Class and Instance UIDs and the encoding its
    first element shows (implicit or explicit VR little endian). The rest of the checks then
    apply as to any file. Anything else comes back as it is (refused as not DICOM)."""
    if len(data) >= 132 and bytes(data[128:132]) == b"DICM":
        return data
    if bytes(data[:4]) == b"DICM":
        return _PREAMBLE + bytes(data)
    try:
        implicit = bytes(data[4:6]) not in _LONG_LENGTH_VRS | _SHORT_LENGTH_VRS
        uids = _bare_dataset_uids(data, implicit)
    except (struct.error, UnicodeDecodeError):
        return data
    if uids is None:
        return data
    if _encapsulated_pixels(data, implicit):
        raise Rejected("a DICOM dataset without file meta whose pixel data is compressed: its "
                       "transfer syntax cannot be known (send it with its file meta)")
    syntax = _IMPLICIT_LE if implicit else _EXPLICIT_LE
    return b"".join((_PREAMBLE, b"DICM", file_meta_bytes(*uids, syntax), bytes(data)))


def _bare_dataset_uids(data, implicit: bool) -> tuple[str, str] | None:
    """(SOP Class UID, SOP Instance UID) of a little-endian dataset starting at byte 0, walking
    its first elements; None unless it starts in group 0008 and both are there, UID-shaped."""
    if len(data) < 8 or struct.unpack_from("<H", data, 0)[0] != 0x0008:
        return None
    found = _first_uids(data, 0, implicit)
    uids = found.get(0x00080016), found.get(0x00080018)
    if not all(uid and len(uid) <= 64 and _UID_FORM.fullmatch(uid) for uid in uids):
        return None
    return uids


def _encapsulated_pixels(data, implicit: bool) -> bool:
    """Whether the dataset's own (top-level) Pixel Data has an undefined length: compressed.
    (An icon's, in a sequence before it, says nothing of it.)"""
    at = _walk_elements(data, 0, implicit)
    if at is None or not _pixels_at(data, at) or at + 12 > len(data):
        return False
    return struct.unpack_from("<I", data, at + (4 if implicit else 8))[0] == 0xFFFFFFFF


def inflate_deflated(data):
    """A Deflated Explicit VR Little Endian file as the same file in Explicit VR Little Endian
    (inflated within MAX_INFLATED_BYTES, or Rejected); any other file as it is. Inflated
    once here, pydicom and the de-identifier never inflate it again."""
    if len(data) < 132 or bytes(data[128:132]) != b"DICM":
        return data
    try:
        _, start = _meta_elements(data)
    except (struct.error, ValueError):
        return data  # (the parser says what is wrong with it)
    inflated = _inflated_file(memoryview(data)[:start], [memoryview(data)[start:]])
    return data if inflated is None else inflated


def _inflated_file(head, parts: list) -> bytes | None:
    """``head`` (preamble and file meta) and the dataset in ``parts`` as an Explicit VR Little
    Endian file when the meta says the dataset is deflated; None when it does not."""
    try:
        meta, _ = _meta_elements(head)
    except (struct.error, ValueError):
        return None  # (the parser says what is wrong with it)
    if meta.get(0x10, b"").rstrip(b"\x00 ") != _DEFLATED.encode():
        return None
    meta[0x10] = _EXPLICIT_LE.encode() + b"\x00"
    body = b"".join(_meta_element(element, value) for element, value in sorted(meta.items())
                    if element in _META_VRS)
    file = [bytes(head[:128]), b"DICM", struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)), body]
    _inflate_into(file, parts, MAX_INFLATED_BYTES)
    return b"".join(file)  # (bytes: a BytesIO over them copies nothing, over a bytearray all)


def _meta_elements(data) -> tuple[dict[int, bytes], int]:
    """The file meta's values by element number (raw bytes), walked as explicit VR, and where
    the dataset starts."""
    values: dict[int, bytes] = {}
    offset = 132
    while offset + 8 <= len(data) and struct.unpack_from("<H", data, offset)[0] == 2:
        element = struct.unpack_from("<H", data, offset + 2)[0]
        vr, length, offset = _element_header(data, offset, implicit=False)
        if not vr.isalpha() or offset + length > len(data):
            raise ValueError("not an explicit VR file meta")
        values[element] = bytes(data[offset:offset + length])
        offset += length
    return values, offset


# The file meta's elements and their VRs (PS3.10 7.1); no other is carried over.
_META_VRS = {0x0001: b"OB", 0x0002: b"UI", 0x0003: b"UI", 0x0010: b"UI", 0x0012: b"UI",
             0x0013: b"SH", 0x0016: b"AE", 0x0017: b"AE", 0x0018: b"AE", 0x0026: b"UR",
             0x0100: b"UI", 0x0102: b"OB"}


def _meta_element(element: int, value: bytes) -> bytes:
    vr = _META_VRS[element]
    if vr in _LONG_LENGTH_VRS:
        return struct.pack("<HH2sHI", 2, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 2, element, vr, len(value)) + value


def _inflate_into(file: list[bytes], parts: list, limit: int) -> None:
    """Append the raw deflate stream in ``parts`` inflated, a chunk at a time: the inflater is
    never asked for more than ``limit`` + 1 bytes in all, so a bomb costs at most that."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        for pending in parts:
            while not inflater.eof:
                chunk = inflater.decompress(pending, min(INFLATE_CHUNK, limit + 1 - total))
                pending = inflater.unconsumed_tail
                if not chunk and not pending:
                    break  # this part is used up (the stream may go on in the next)
                total += len(chunk)
                if total > limit:
                    raise Rejected(f"deflated data inflates beyond {limit:,} bytes (the limit "
                                   "for a deflated instance: send it uncompressed)")
                file.append(chunk)
    except zlib.error:
        raise Rejected("unreadable deflated data: not a deflate stream") from None
    if not inflater.eof:
        raise Rejected("unreadable deflated data: the stream ends before its end (truncated file?)")


def read_header(data: bytes) -> Dataset:
    """Parse the header of a DICOM Part 10 file and check it is complete, or raise Rejected.

    Pixel data is not read here: the de-identifier checks its length against the file's.
    """
    return _parse(data)[0]


_PIXEL_TAGS = ((0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009))


def read_received(head: bytes, body) -> Dataset:
    """``read_header`` for the file ``head + body`` (file meta, then the dataset as received:
    one buffer or a list of them) without joining them: the header is parsed from the first
    bytes of ``body``, more only if the header is longer, and the pixel data is never copied.
    Raises Rejected like it."""
    parts = body if isinstance(body, list) else [body]
    inflated = _inflated_file(head, parts)
    if inflated is not None:
        return _parse(inflated)[0]
    length = sum(map(len, parts))
    size = len(head) + length
    peek = HEADER_PEEK
    while peek < length:
        prefix = head + _first_bytes(parts, peek)
        if _check_element_count(prefix) is False:  # the header goes on: no use parsing this
            peek *= 4
            continue
        try:
            ds, start = parse_header(prefix, force=False)
        except Exception:  # noqa: BLE001 - cut mid-element, perhaps: read more
            ds = None
        if ds is not None and _stopped_at_pixels(ds, prefix, start):
            _check_complete(ds, size)
            _check_native_pixels(ds, prefix, start, size)
            return ds
        peek *= 4
    return _parse(head + _first_bytes(parts, length))[0]  # small, or a header beyond the peeks


def _first_bytes(parts: list, count: int) -> bytes:
    """The first ``count`` bytes of the buffers ``parts`` together."""
    pieces = []
    for part in parts:
        if count <= 0:
            break
        pieces.append(bytes(part[:count]))
        count -= len(pieces[-1])
    return b"".join(pieces)


def _stopped_at_pixels(ds: Dataset, prefix: bytes, start: int) -> bool:
    """The parse of a prefix reached the pixel data (so the whole header was in it)."""
    if start + 12 > len(prefix) or len(prefix) < 132 or prefix[128:132] != b"DICM":
        return False
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    order = ">" if syntax == "1.2.840.10008.1.2.2" else "<"
    return struct.unpack_from(order + "HH", prefix, start) in _PIXEL_TAGS


def _parse(data: bytes) -> tuple[Dataset, int, int]:
    """``read_header``, the offset where the header ends (for the de-identifier) and its
    elements at every depth (``_parsed_count``) of a Part 10 file (``as_part10``: a caller
    that needs the offset gives the file so)."""
    data = as_part10(data)
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Rejected(NOT_DICOM)
    data = inflate_deflated(data)
    end, order = _header_end(data)  # (counted before parsing: Rejected beyond the limit)
    try:
        ds, start = parse_header(data, force=False)
    except RecursionError:  # (one the byte walk could not read: a malformed element)
        raise Rejected(_TOO_DEEP.format(MAX_SEQUENCE_DEPTH)) from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad input
        raise Rejected(f"unreadable DICOM ({type(exc).__name__})") from None
    elements = _check_complete(ds, len(data))
    _check_native_pixels(ds, data, start)
    if end is not None and end != len(data) and not _pixels_at(data, end, order) and not _padding(data, end):
        # pydicom drops a last element whose header is cut, and reads a cut value as it is
        raise Rejected("truncated: the file ends inside an element (its header or value is cut)")
    return ds, start, elements


def _padding(data, end: int) -> bool:
    """Whether the bytes after the walk's ``end`` are fewer than an element's header and all
    zero: padding some writers leave (pydicom reads past it), not a cut element's header."""
    return end < len(data) and len(data) - end < 8 and not any(bytes(data[end:]))


def _check_complete(ds: Dataset, size: int) -> int:
    """Rejected unless the parsed header is whole and names its instance; its elements at
    every depth (``_parsed_count``)."""
    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if not tsuid:
        raise Rejected("unreadable file meta information (no transfer syntax)")
    if not UID(str(tsuid).strip("\x00 ")).is_transfer_syntax:
        raise Rejected("unknown transfer syntax (not one of the DICOM standard's): its pixel "
                       "data cannot be read")
    elements = _parsed_count(ds)
    if elements > MAX_HEADER_ELEMENTS:  # (one the byte walk could not count)
        raise Rejected(_TOO_MANY_ELEMENTS.format(MAX_HEADER_ELEMENTS))
    try:
        missing = [k for k in REQUIRED_UIDS if not str(ds.get(k, "") or "").strip("\x00 ")]
    except Exception as exc:  # noqa: BLE001
        raise Rejected(f"unreadable DICOM header ({type(exc).__name__})") from None
    if missing:
        raise Rejected(f"incomplete DICOM: no {', '.join(missing)} (truncated file?)")
    named = str(header_value(ds.file_meta, "MediaStorageSOPInstanceUID") or "").strip("\x00 ")
    if named and named != str(ds.SOPInstanceUID).strip("\x00 "):
        raise Rejected("the file meta (or the C-STORE request) names another SOP instance than "
                       "the dataset it carries")
    tags = list(ds.keys())
    if not tags:
        raise Rejected("empty DICOM dataset")
    last = ds._dict[tags[-1]]  # the raw element: its offsets show whether the file was cut
    if isinstance(last, RawDataElement) and not UID(str(tsuid)).is_deflated:  # inflated offsets
        if last.length == 0xFFFFFFFF:
            if not _ends_with_delimiter(last, size):
                raise Rejected("truncated: the file ends inside an undefined-length element")
        elif last.value_tell + last.length > size:
            raise Rejected("truncated: the last element is shorter than its declared length")
    return elements


def _parsed_count(ds: Dataset) -> int:
    """The elements and items of a parsed header at every depth (sequences pydicom has read;
    the others are still bytes), counted without recursion."""
    count, datasets = 0, [ds]
    while datasets:
        elements = datasets.pop()._dict.values()
        count += len(elements)
        for elem in elements:
            if not isinstance(elem, RawDataElement) and elem.VR == "SQ":
                count += len(elem.value)
                datasets.extend(elem.value)
    return count


def _ends_with_delimiter(elem: RawDataElement, size: int) -> bool:
    value = elem.value or b""
    return elem.value_tell + len(value) + len(_SEQUENCE_DELIMITER) <= size


def _check_native_pixels(ds: Dataset, data: bytes, start: int, size: int | None = None) -> None:
    """Uncompressed pixel data must hold every pixel the header declares, and the file every
    byte its pixel data declares (``size``: the file's length, if ``data`` is only its start)."""
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if syntax.is_deflated:
        return  # offsets are in the inflated stream; a cut stream fails to inflate instead
    # pydicom stops at the pixel data's whole header, or at the end of a file cut inside it
    if start >= (len(data) if size is None else size) and _is_image(ds):
        raise Rejected("truncated: the header describes an image, the file ends before its "
                       "pixel data")
    offset = 4 if syntax.is_implicit_VR else 8  # where the value's length is
    if start + offset + 4 > len(data) or syntax.is_encapsulated:
        return
    little = syntax != "1.2.840.10008.1.2.2"
    order = "<" if little else ">"
    if struct.unpack_from(order + "HH", data, start) not in _PIXEL_TAGS:
        return
    (length,) = struct.unpack_from(order + "L", data, start + offset)
    if length == 0xFFFFFFFF:
        raise Rejected("compressed (encapsulated) pixel data under an uncompressed transfer "
                       "syntax: a mislabelled file, its pixels cannot be read (send it with "
                       "its compressed transfer syntax)")
    present = (len(data) if size is None else size) - (start + offset + 4)
    if length > present:
        raise Rejected(f"truncated: the pixel data declares {length} bytes, {present} present")
    expected = native_pixel_bytes(ds)
    if expected is None:
        raise Rejected("unreadable image attributes (Rows, Columns, Bits Allocated, Samples per "
                       "Pixel or Number of Frames)")
    if length < expected:
        raise Rejected(f"pixel data too short: {length} of {expected} bytes (truncated?)")


# SOP classes whose instances always carry pixel data (the Image Pixel module, or float
# pixels): pydicom's storage classes named "... Image Storage ...", and those named otherwise.
# (Structured reports, presentation states, RT structure sets, raw data, encapsulated
# documents, MR spectroscopy and the like have none.)
_PIXEL_CLASSES = frozenset(
    uid for uid, (name, kind, *_) in UID_dictionary.items()
    if kind == "SOP Class" and uid.startswith("1.2.840.10008.5.1.4.1.1.") and "Image Storage" in name
) | {SegmentationStorage, ParametricMapStorage, EnhancedUSVolumeStorage,
     OphthalmicThicknessMapStorage, CornealTopographyMapStorage}


def _is_image(ds: Dataset) -> bool:
    """The header is an image's: its SOP class carries pixel data, or it has Rows (but for
    MR spectroscopy, whose Rows and Columns are of its spectroscopy data)."""
    sop_class = str(header_value(ds, "SOPClassUID") or "").strip("\x00 ")
    return sop_class in _PIXEL_CLASSES or (0x00280010 in ds._dict
                                           and sop_class != MRSpectroscopyStorage)


# -- the patient ---------------------------------------------------------------------------


def header_value(ds: Dataset, keyword: str):
    """The value of the element ``keyword`` (None when absent), or Rejected naming the element
    when pydicom cannot read it (a corrupt VR or value: the file's fault, never an outage).
    pydicom's message may quote the value: only its type is passed on."""
    try:
        return ds.get(keyword, None)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a malformed element
        raise Rejected(f"unreadable DICOM header: {keyword} ({type(exc).__name__})") from None


class _Number(NamedTuple):
    """A valid NHS/CHI number found in an identifier of the header."""

    digits: str
    in_patient_id: bool
    named: bool  # its Issuer of Patient ID says it is an NHS/CHI number


# A label a PACS or a clerk may put before the number in a DICOM identifier: "NHS9990000018",
# "NHS: 999 000 0018", "CHI No. ...", "NHS number ...". Images only: a sheet's column is the
# number itself.
_NUMBER_LABEL = re.compile(r"(?:NHS|CHI)\s*(?:(?:No\.?|Number)\s*)?:?\s*", re.IGNORECASE)
# An Issuer of Patient ID naming the NHS/CHI number itself ("NHS", "NHS Number", "NHSN",
# "CHI"), or the NHS number's OID; a trust's name ("Royal Test NHS Trust") is no such hint.
_NUMBER_ISSUER = re.compile(r"(?:NHS|CHI)[\s_]*(?:N|No\.?|Num|Number)?|2\.16\.840\.1\.113883\.2\.1\.4\.1",
                            re.IGNORECASE)


def _number_in(raw: str) -> str | None:
    """The valid NHS/CHI number an identifier holds, bare or after an NHS/CHI label."""
    text = raw.strip()
    if label := _NUMBER_LABEL.match(text):
        text = text[label.end():]
    try:
        return validate_patient_number(text)
    except InvalidPatientNumber:
        return None


def _names_the_number(ds: Dataset) -> bool:
    issuer = str(header_value(ds, "IssuerOfPatientID") or "").strip()
    return bool(_NUMBER_ISSUER.fullmatch(issuer))


def _identifiers(ds: Dataset) -> Iterator[tuple[str, bool, bool]]:
    """(value, in Patient ID, issuer names the NHS/CHI number) of each patient identifier."""
    yield str(header_value(ds, "PatientID") or ""), True, _names_the_number(ds)
    others = header_value(ds, "OtherPatientIDs")
    if others:
        yield from ((str(v), False, False)
                    for v in (others if isinstance(others, MultiValue) else [others]))
    for item in header_value(ds, "OtherPatientIDsSequence") or []:
        yield str(header_value(item, "PatientID") or ""), False, _names_the_number(item)


def _valid_numbers(ds: Dataset) -> list[_Number]:
    return [_Number(digits, in_patient_id, named)
            for raw, in_patient_id, named in _identifiers(ds)
            if raw.strip() and (digits := _number_in(raw))]


def _chosen(numbers: list[_Number]) -> str | None:
    """The patient's number among the valid ones: one its issuer names as NHS/CHI first; else
    one in Other Patient IDs (UK PACS put the hospital number in Patient ID, and 1 in 14
    ten-digit hospital numbers passes the check); else Patient ID's."""
    for rule in (lambda n: n.named, lambda n: not n.in_patient_id, lambda n: True):
        found = next((n.digits for n in numbers if rule(n)), None)
        if found:
            return found
    return None


def _remember_in_vault(numbers: dict[str, str]) -> None:
    """Keep {pseudonym: number} in the vault so a data manager can reveal it: one read for all
    of them, and one vault transaction for those it lacks. Asked every batch, never remembered
    in the process: a withdrawal deletes the entry, and a reinstated patient's next file must
    put it back."""
    if not numbers:
        return
    from nccid.identity.models import VaultEntry
    from nccid.identity.service import encrypt_for_vault, store_in_vault

    wanted = list(numbers)
    present: set[str] = set()
    for first in range(0, len(wanted), 500):
        present.update(VaultEntry.objects.filter(pseudonym__in=wanted[first:first + 500])
                       .values_list("pseudonym", flat=True))
    new = {p: encrypt_for_vault(p, d) for p, d in numbers.items() if p not in present}
    if new:
        store_in_vault(new)  # (ON CONFLICT DO NOTHING: a racing batch's entry is kept)


# The clinical upload's refusal of a test number (clinical.validation), said of an image.
TEST_NUMBER_REFUSED = ("the patient's NHS number is an NHS test number (999 range), not a "
                       "patient's: this installation refuses test data (setting "
                       "accept_test_numbers)")


def identify(ds: Dataset, site, to_vault: dict[str, str] | None = None,
             links: dict[str, str | None] | None = None) -> Patient:
    """The patient's pseudonym (from the site's patient link or an NHS/CHI number).

    The site's link of the Patient ID wins: a hospital number the site's sheet names is that
    patient's, even when it passes the NHS/CHI check. Then an NHS/CHI number (``_chosen``);
    else the Patient ID is a hospital number no sheet names yet (pseudonym None: it waits).
    ``links`` memoises the site's links per Patient ID for a batch ({hospital hash:
    pseudonym or None}), so a batch asks once per patient, not once per file.

    A number found goes to the vault now, or into ``to_vault`` for the caller to store with
    others (before anything of the file is kept). A test number is refused as test data
    unless the installation accepts them, as in a clinical upload: its images would otherwise
    reach researchers while its patient's clinical rows are refused."""
    keyring = get_keyring()
    patient_id = str(header_value(ds, "PatientID") or "").strip()
    hospital_hash = keyring.hospital_hash(site.code, patient_id) if patient_id else None
    linked = hospital_hash and _site_link(site, hospital_hash, links)
    if linked:
        return Patient(linked, hospital_hash)
    digits = _chosen(_valid_numbers(ds))
    if digits is None:
        if not hospital_hash:
            raise Rejected("no Patient ID and no NHS/CHI number in Other Patient IDs")
        return Patient(None, hospital_hash)
    if is_test_number(digits) and not get_settings().accept_test_numbers:
        raise Rejected(TEST_NUMBER_REFUSED)
    pseudonym = keyring.pseudonym(digits)
    if to_vault is None:
        _remember_in_vault({pseudonym: digits})
    else:
        to_vault[pseudonym] = digits
    return Patient(pseudonym, None)


def _site_link(site, hospital_hash: str, links: dict[str, str | None] | None) -> str | None:
    if links is None:
        return deps.pseudonym_for_hospital_number(site, hospital_hash)
    if hospital_hash not in links:
        links[hospital_hash] = deps.pseudonym_for_hospital_number(site, hospital_hash)
    return links[hospital_hash]


# -- storage of waiting images -------------------------------------------------------------


def _context(site_code: str, sop_uid: str) -> str:
    return f"imaging:{site_code}:{sop_uid}"


# Temporaries of waiting images: ``.<name>.<host>.<pid>.<thread>.tmp``. One left by a process
# killed mid-write is named by no row (a withdrawal cannot find it): it is removed once its
# writer is known dead (a process of this host that no longer runs), or, written on another
# host, once older than any write takes.
STALE_TEMPORARY = 3600  # seconds
_swept_folders: set[Path] = set()


def _temporary(folder: Path, name: str) -> Path:
    return folder / f".{name}.{_HOST}.{os.getpid()}.{threading.get_ident()}.tmp"


def sweep_temporaries(folder: Path | None = None) -> int:
    """Remove the temporaries in the waiting images' folder whose writer died (killed
    mid-write); returns how many. Runs at an import's start, at ``purge-pending`` and at each
    process's first write there."""
    folder = folder or get_settings().pending_dir
    _swept_folders.add(folder)
    removed = 0
    stale_before = time.time() - STALE_TEMPORARY
    try:
        entries = [e for e in os.scandir(folder)
                   if e.name.startswith(".") and e.name.endswith(".tmp")]
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if _writer_dead(entry.name) or entry.stat().st_mtime < stale_before:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # renamed into place, or removed by another sweep
            continue
    if removed:
        log.info("removed %d temporary file(s) of waiting images left by a killed process",
                 removed)
    return removed


def _writer_dead(temporary: str) -> bool:
    """The temporary was written by a process of this host that no longer runs."""
    parts = temporary.split(".")
    return len(parts) >= 5 and process_gone(f"{parts[-4]}.{parts[-3]}")


class PendingFolderError(OSError):
    """A waiting image could not be written into (or read from) ``pending_dir``: that
    folder's outage, whatever the error names (a full or failing disk, ENOSPC or EIO, names
    no file)."""


# The folder of waiting images carries this file from its first write, holding a token the
# database records with the folder's path (PendingFolderMark). At that path, a folder whose
# marker lacks the token is not the one the images were written to (the bare mount point of
# an unmounted disk, a folder renamed away and made again), even when no image waits: nothing
# is written there, and a waiting file missing from it is out of reach, not lost.
MARKER = ".nccid-pending-folder"
_MARKER_TEXT = ("nccid keeps its waiting images in this folder. Keep this file: without it,\n"
                "or with another token, nccid takes the folder for an unmounted disk.\n")
_TOKEN_LINE = "token: "
MARK_COMMAND = "nccid images pending --mark-folder"
NOT_THE_FOLDER = (f"it is not the folder they were written to (no {MARKER} with the recorded "
                  f"token in it): is its disk mounted, and is it the one folder every host "
                  f"shares? If it is that folder, mounted, and its waiting files were lost, "
                  f"run '{MARK_COMMAND}'")


def write_encrypted(name: str, data: bytes, site_code: str, sop_uid: str) -> int:
    """Encrypt ``data`` into ``pending_dir/name`` atomically; returns the size written.
    Raises ``PendingFolderError`` if the folder cannot be written or is not the waiting
    images' (``check_pending_folder``)."""
    token = get_keyring().encrypt(data, _context(site_code, sop_uid), purpose="pending")
    folder = get_settings().pending_dir
    try:
        check_pending_folder(folder)
        _write_atomically(folder, name, token)
    except OSError as exc:
        raise PendingFolderError(exc.errno, exc.strerror, exc.filename) from exc
    return len(token)


def check_pending_folder(folder: Path) -> None:
    """Raise ``PendingFolderError`` unless ``folder`` is the one the waiting images were
    written to: its marker holds the recorded token. A folder at another path than the
    recorded one (moved on purpose), or with nothing recorded (a new installation, or one
    from before tokens), is taken as before: marked now, and recorded, when no image waits
    (a new folder, made if missing) or when it holds a waiting image's file (adopted)."""
    try:
        mark = PendingFolderMark.objects.filter(pk=1).first()
        if mark is None or mark.path != str(folder):
            _take_folder(folder, mark)
        elif _marker_token(folder) != mark.token:
            raise PendingFolderError(errno.ENOENT, NOT_THE_FOLDER, str(folder))
    except PendingFolderError:
        raise
    except OSError as exc:
        raise PendingFolderError(exc.errno, exc.strerror, exc.filename) from exc


def mark_pending_folder(folder: Path) -> None:
    """The operator's word that ``folder`` is the waiting images' folder, mounted (its
    waiting files lost, or its marker deleted): it is marked with the recorded token (or a
    new one, recorded). Images whose file it lacks are then refused as lost."""
    if not folder.is_dir():
        raise PendingFolderError(errno.ENOENT, "no such folder", str(folder))
    mark = PendingFolderMark.objects.filter(pk=1).first()
    try:
        token = _record(folder, mark.token if mark else _marker_token(folder) or _new_token(),
                        mark)
        _write_marker(folder, token)
    except OSError as exc:
        raise PendingFolderError(exc.errno, exc.strerror, exc.filename) from exc


def _take_folder(folder: Path, mark: PendingFolderMark | None) -> None:
    found = _marker_token(folder)  # "" for a marker from before tokens
    if found is None and _images_wait() and not _holds_a_waiting_file(folder):
        raise PendingFolderError(errno.ENOENT, NOT_THE_FOLDER, str(folder))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # (only its owner may list it)
    token = _record(folder, found or _new_token(), mark)
    if token == found:
        return
    try:
        _write_marker(folder, token)
    except OSError:  # (a full disk): the next write takes the folder again, not an outage
        _unrecord(folder, token, mark)
        raise


def _new_token() -> str:
    return secrets.token_hex(16)


def _record(folder: Path, token: str, mark: PendingFolderMark | None) -> str:
    """Record ``token`` for ``folder``; returns the token recorded, another process's if it
    recorded first (every writer then marks the folder with that one)."""
    values = {"token": token, "path": str(folder), "marked_at": timezone.now()}
    if mark is None:
        return PendingFolderMark.objects.get_or_create(pk=1, defaults=values)[0].token
    PendingFolderMark.objects.filter(pk=1, token=mark.token, path=mark.path).update(**values)
    return PendingFolderMark.objects.get(pk=1).token


def _unrecord(folder: Path, token: str, mark: PendingFolderMark | None) -> None:
    recorded = PendingFolderMark.objects.filter(pk=1, token=token, path=str(folder))
    if mark is None:
        recorded.delete()
    else:
        recorded.update(token=mark.token, path=mark.path, marked_at=mark.marked_at)


def _marker_token(folder: Path) -> str | None:
    """The token in the folder's marker; "" if its marker holds none, None if it has none."""
    try:
        text = (folder / MARKER).read_text(errors="replace")
    except FileNotFoundError:  # (another error, unreadable or not a folder, is raised)
        return None
    for line in text.splitlines():
        if line.startswith(_TOKEN_LINE):
            return line[len(_TOKEN_LINE):].strip()
    return ""


def _images_wait() -> bool:
    """Some waiting or held image has a file in ``pending_dir``."""
    return (PendingImage.objects.exists()
            or HeldImage.objects.filter(status=HeldStatus.HELD).exclude(file_name="").exists())


def _holds_a_waiting_file(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            names = sorted(entry.name for entry in entries if not entry.name.startswith("."))
    except FileNotFoundError:
        return False
    for start in range(0, len(names), 500):
        chunk = names[start:start + 500]
        if (PendingImage.objects.filter(file_name__in=chunk).exists()
                or HeldImage.objects.filter(status=HeldStatus.HELD, file_name__in=chunk).exists()):
            return True
    return False


def _write_marker(folder: Path, token: str) -> None:
    """Whole or not at all (a reader never sees half a token); every writer writes the
    recorded token, so the last one to replace it changes nothing."""
    _write_atomically(folder, MARKER, f"{_MARKER_TEXT}{_TOKEN_LINE}{token}\n".encode())


def _write_atomically(folder: Path, name: str, token: bytes) -> None:
    if folder not in _swept_folders:
        sweep_temporaries(folder)
    tmp = _temporary(folder, name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as handle:
            handle.write(token)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / name)
    except OSError:
        with contextlib.suppress(OSError):  # a partial file would take room from a full disk
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)  # the new name survives a power cut too: the file is all it has


def read_encrypted(name: str, site_code: str, sop_uid: str) -> bytes:
    token = (get_settings().pending_dir / name).read_bytes()
    return get_keyring().decrypt(token, _context(site_code, sop_uid), purpose="pending")


def remove_encrypted(name: str) -> None:
    if name:
        Path(get_settings().pending_dir / name).unlink(missing_ok=True)


# -- the pipeline --------------------------------------------------------------------------


def close_thread_connections() -> None:
    """The calling thread's own database connections, closed: a thread that finishes
    batches (the import's, the node worker's) runs this as its last task."""
    from django.db import connections

    connections.close_all()


def already_taken(sop_uid: str) -> bool:
    """True when this de-identified SOP Instance UID is stored, pending or held."""
    return bool(taken_uids([sop_uid]))


def taken_uids(sop_uids, *, pending: bool = True) -> set[str]:
    """Those of these de-identified SOP Instance UIDs already stored, pending (unless not
    ``pending``) or held (still awaiting a decision: a decided row is only a record, its file
    is gone, and a re-send is de-identified and held again, ``_hold``)."""
    wanted = sorted(set(sop_uids))
    found: set[str] = set()
    for first in range(0, len(wanted), 500):
        chunk = wanted[first:first + 500]
        queries = [HeldImage.objects.filter(sop_uid__in=chunk, status=HeldStatus.HELD)]
        if pending:
            queries.append(PendingImage.objects.filter(sop_uid__in=chunk))
        waiting = [query.order_by().values_list("sop_uid", flat=True) for query in queries]
        found.update(deps.images_existing_query(chunk).order_by().union(*waiting, all=True))
    return found


def _taken(site, sop_uids, resent: set[str]) -> set[str]:
    """``taken_uids`` less the instances only waiting for a link of this site's, which go into
    ``resent``: sent again by the site, such an image is its correction and takes the waiting
    copy's place (``_replace_waiting``). Waiting for another site's link, or stored, or held,
    an instance stays taken (no site may learn what another sent: docs/decisions.md)."""
    taken = taken_uids(sop_uids)
    if not taken:
        return taken
    ours: set[str] = set()
    ordered = sorted(taken)
    for first in range(0, len(ordered), 500):
        ours.update(PendingImage.objects.filter(site=site, sop_uid__in=ordered[first:first + 500])
                    .values_list("sop_uid", flat=True))
    waiting = ours - taken_uids(ours, pending=False) if ours else ours
    resent |= waiting
    return taken - waiting


@contextlib.contextmanager
def long_run_collector(threshold: int = 50_000) -> Iterator[None]:
    """For an import or a node's worker: the objects already made (Django, pydicom's
    dictionaries: about a million) are frozen out of the cycle collector, and it runs every
    ``threshold`` allocations instead of 700. Parsing makes many short-lived objects and
    almost no cycles; full collections over the frozen million had cost an import about 1 s
    of its 8-10. Restored on exit."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def ingest(data: bytes, site, source: str) -> IngestOutcome:
    """Take in one DICOM file; never raises (a failure is a REJECTED outcome with a reason)."""
    return ingest_many([data], site, source)[0]


def ingest_many(items: list[bytes], site, source: str) -> list[IngestOutcome]:
    """``ingest`` for several files at once, outcomes in input order; never raises.

    Same rules file by file, but the duplicate check is a few queries for all of them, the
    files to store are written while the next ones are de-identified and made durable
    together, and one transaction records them with their receipts.
    """
    return finish_many(prepare_many(items, site, source))


@dataclass
class PreparedBatch:
    """A batch de-identified, its images being written (``prepare_many``); ``finish_many``
    makes it durable and recorded and gives the outcomes. An importer prepares the next
    batch while this one finishes on another thread."""

    items: list
    site: object
    source: str
    outcomes: list
    repeats: list[int]  # a SOP UID met twice: the repeat waits for the first's outcome
    batch: object = None  # warehouse.service.ImageBatch of the images to store
    to_store: list = None  # type: ignore[assignment]
    resent: set[str] = field(default_factory=set)  # only waiting for this site's link

    def fail(self, exc: Exception) -> None:
        failed = _internal_error(exc, self.source)
        self.outcomes = [o if o is not None or i in self.repeats else failed
                         for i, o in enumerate(self.outcomes)]
        self.to_store = []
        if self.batch is not None:
            self.batch.discard()


def prepare_many(items: list, site, source: str) -> PreparedBatch:
    """Parse, identify and de-identify ``items``; files to store start being written, held
    and waiting ones are kept encrypted now. Never raises."""
    prepared = PreparedBatch(list(items), site, source, [None] * len(items), [], None, [])
    try:
        _prepare(prepared)
    except Exception as exc:  # noqa: BLE001 - one bad batch must never stop a node or an import
        prepared.fail(exc)
    return prepared


def finish_many(prepared: PreparedBatch) -> list[IngestOutcome]:
    """Make a prepared batch durable and recorded; its outcomes in input order. Never raises.

    Safe on another thread than ``prepare_many``'s (it uses that thread's DB connection)."""
    if prepared.to_store:
        try:
            _commit(prepared)
        except Exception as exc:  # noqa: BLE001
            prepared.fail(exc)
    outcomes = prepared.outcomes
    if prepared.repeats:
        again = ingest_many([prepared.items[i] for i in prepared.repeats], prepared.site,
                            prepared.source)
        for index, outcome in zip(prepared.repeats, again, strict=True):
            outcomes[index] = outcome
    if None in outcomes:  # (a bug: every path above gives each file one)
        outcomes = [_no_outcome(prepared.source) if o is None else o for o in outcomes]
    return outcomes  # type: ignore[return-value]


def _no_outcome(source: str) -> IngestOutcome:
    """An internal error for a file intake left without an outcome: the node keeps it in its
    spool and retries it, an import counts it failed; neither stops nor drops it."""
    log.error("intake gave a file from %s no outcome: counted as an internal error", source)
    return IngestOutcome(IngestStatus.REJECTED, "internal error (no outcome)")


def _internal_error(exc: Exception, source: str, *, database_only: bool = False) -> IngestOutcome:
    # The message of a parsing or database error may quote a value: log where, not what.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"
    log.error("intake failed for a file from %s (%s at %s)", source, type(exc).__name__, where)
    outage = outage_of(exc) if not database_only or _database_error(exc) else ""
    return IngestOutcome(IngestStatus.REJECTED, f"internal error ({type(exc).__name__})",
                         outage=outage)


# What an operator checks when intake failed because of its environment, not the file.
_OUTAGES = {
    "database": "the database does not answer ({why}): check database_url and "
                "vault_database_url ('nccid config show') and that the server is running",
    "storage_url": "the warehouse cannot be written ({why}): check storage_url ('nccid config "
                   "show') and that its folder or object store is there and answers",
    "pending_dir": "the folder of waiting images cannot be used ({why}): check pending_dir "
                   "('nccid config show') and that its disk is there (mounted) with room",
    # (the database answers: PostgreSQL rolled back one of two writers waiting for each other)
    "deadlock": "a deadlock with another process writing the same images ({why}; the "
                "database answers): nothing of them was recorded, they go in when tried again",
}


def outage_of(exc: BaseException) -> str:
    """One line naming the setting to check when ``exc`` is an outage (a database or object
    store that does not answer, a folder that cannot be written), else "". The error's own
    message is never quoted (it may hold an object key or a value): its reason or class."""
    from nccid.warehouse.service import lock_conflict
    from nccid.warehouse.storage import StorageError

    why = getattr(exc, "strerror", None) or type(exc).__name__
    if lock_conflict(exc):  # (a batch's commit has tried it again COMMIT_TRIES times first)
        return _OUTAGES["deadlock"].format(why=type(exc.__cause__ or exc).__name__)
    if _database_error(exc):
        return _OUTAGES["database"].format(why=why)
    if isinstance(exc, PendingFolderError):  # (known by the step that failed, not the file)
        return _OUTAGES["pending_dir"].format(why=why)
    if isinstance(exc, (StorageError, OSError, *_object_store_errors())):
        return _OUTAGES["storage_url"].format(why=why)
    return ""


def _database_error(exc: BaseException) -> bool:
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, (OperationalError, InterfaceError))


def _object_store_errors() -> tuple[type[BaseException], ...]:
    try:  # the object store's own errors (endpoint unreachable, access denied)
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()
    return (BotoCoreError, ClientError)


class _ToStore(NamedTuple):
    index: int
    pseudonym: str
    meta: object
    has_clinical: bool


class _Parsed(NamedTuple):
    index: int
    header: tuple[Dataset, int]
    patient: Patient
    study: _Study
    sop_uid: str  # keyed


class _Study(NamedTuple):
    """The receipt a file counts into (its keyed study UID), kept from before de-identifying."""

    study_uid: str
    modality: str


# The receipt of refused files whose study cannot be read, for the site to see them all the same.
UNREADABLE_STUDY = _Study("(no readable Study Instance UID)", "")


def _study_of(ds: Dataset, keyring) -> _Study:
    """The file's study, its modality not read yet (the UID is readable: ``_check_complete``
    read it); ``_with_modality`` then reads that (Rejected if it cannot)."""
    return _Study(keyring.uid(str(ds.StudyInstanceUID).strip("\x00 ")), "")


def _study_from_bytes(data, keyring) -> _Study:
    """The study of a file refused before its header was read (cut, mislabelled, too many
    elements...), from a walk of its top-level elements as bytes (``_top_level_uid``); the
    row of unreadable studies when it cannot be read so."""
    try:
        syntax, offset = _syntax_and_dataset_start(data)
        if syntax not in _QUICK_SYNTAXES:
            return UNREADABLE_STUDY
        uid = _top_level_uid(data, offset, syntax == _IMPLICIT_LE, STUDY_INSTANCE_UID)
    except (Rejected, struct.error, UnicodeDecodeError, ValueError):
        return UNREADABLE_STUDY
    return UNREADABLE_STUDY if uid is None else _Study(keyring.uid(uid), "")


def _with_modality(study: _Study, ds: Dataset) -> _Study:
    return study._replace(modality=str(header_value(ds, "Modality") or "").strip().upper()[:16])


def _prepare(prepared: PreparedBatch) -> None:
    """Two passes, a part of the batch at a time (``PARSED_ELEMENTS``; an ordinary batch is
    one part): parse and identify its files (then the vault, the patients' sets and their
    clinical records in a few queries), then de-identify and store or keep each."""
    items, site, source = prepared.items, prepared.site, prepared.source
    to_vault: dict[str, str] = {}
    refused: list[tuple[_Study, str, str, str]] = []  # (study, patient, reason, keyed SOP UID)
    off_list: list[int] = []  # per file, the kept code values emptied for not being on their list
    try:
        for part in _parse_all(items, site, source, prepared.outcomes, to_vault,
                               prepared.repeats, refused, prepared.resent):
            off_list += _prepare_part(prepared, part, to_vault, refused)
            part.clear()  # its headers let go before the next part is parsed
        _log_off_list(site, off_list)
    finally:
        _count_refused(site, source, refused)


def _prepare_part(prepared: PreparedBatch, parsed: list[_Parsed], to_vault,
                  refused) -> list[int]:
    """``_prepare_parsed`` of the part's files less those refused (``_refuse_withdrawn``)."""
    parsed = _refuse_withdrawn(parsed, prepared.outcomes, to_vault, refused)
    off_list = _prepare_parsed(prepared, parsed, to_vault, refused) if parsed else []
    to_vault.clear()  # (remembered, or of refused files: the next part's numbers are its own)
    return off_list


def _refuse_withdrawn(parsed: list[_Parsed], outcomes, to_vault, refused) -> list[_Parsed]:
    """Files of withdrawn patients, and of studies removed from the database, are refused:
    nothing of them is kept (of a withdrawn patient, not even the number for the vault). Two
    queries per batch, none while nothing was ever withdrawn."""
    withdrawn = deps.withdrawn_among({p.patient.pseudonym for p in parsed if p.patient.pseudonym})
    removed = deps.removed_studies_among({p.study.study_uid for p in parsed})
    if not withdrawn and not removed:
        return parsed
    kept = []
    for item in parsed:
        patient = item.patient.pseudonym
        if patient in withdrawn:
            reason = deps.WITHDRAWN_REFUSAL
            to_vault.pop(patient, None)
        elif item.study.study_uid in removed:
            reason = deps.STUDY_REFUSAL
        else:
            kept.append(item)
            continue
        outcomes[item.index] = IngestOutcome(IngestStatus.REJECTED, reason)
        refused.append((item.study, patient or item.patient.hospital_hash or "", reason,
                        item.sop_uid))
    return kept


def _prepare_parsed(prepared: PreparedBatch, parsed: list[_Parsed], to_vault,
                    refused) -> list[int]:
    """De-identify and store or keep each parsed file; per file, its kept values emptied for
    being off their list (``_log_off_list``)."""
    from nccid.warehouse.service import ImageBatch

    items, site, source, outcomes = (prepared.items, prepared.site, prepared.source,
                                     prepared.outcomes)
    _remember_in_vault(to_vault)
    pseudonyms = {p.patient.pseudonym for p in parsed if p.patient.pseudonym}
    clinical = deps.clinical_pseudonyms(pseudonyms)
    if prepared.batch is None:  # (the batch's first part)
        prepared.batch = ImageBatch(site)
    batch = prepared.batch
    batch.assign_sets(pseudonyms)
    off_list = []
    deidentifier = deps.deidentifier()  # once a part (a batch): it reads the date shift's scheme
    for index, header, patient, study, sop_uid in parsed:
        try:
            parts, result, meta, header_json = _deidentify(deidentifier, items[index], patient,
                                                           header)
            off_list.append(result.values_off_list)
            resent = sop_uid in prepared.resent
            if result.held_reason:
                outcomes[index] = _hold(b"".join(parts), meta, site, source, patient,
                                        result.held_reason, resent)
            elif patient.pseudonym is None:
                outcomes[index] = _keep_pending(b"".join(parts), meta, site, source,
                                                patient.hospital_hash, resent)
            else:
                linked = patient.pseudonym in clinical
                batch.add(patient.pseudonym, parts, meta, dataset=result.dataset,
                          header=header_json, linked=linked,
                          hospital_hash=patient.hospital_hash or "")
                prepared.to_store.append(_ToStore(index, patient.pseudonym, meta, linked))
        except Rejected as exc:
            outcomes[index] = IngestOutcome(IngestStatus.REJECTED, str(exc))
            refused.append((study, patient.pseudonym or patient.hospital_hash or "", str(exc),
                            sop_uid))
        except Exception as exc:  # noqa: BLE001
            outcomes[index] = _internal_error(exc, source)
    return off_list


def _log_off_list(site, per_file: list[int]) -> None:
    """How many kept values a batch lost: codes not on their attribute's list (Body Part
    Examined's defined terms, enumerated values) and kept text that looked identifying (a
    name, an NHS number: deid/identifying.py), put there by a site's equipment or staff.
    Counts only: the values may be names."""
    emptied = [n for n in per_file if n]
    if emptied:
        log.info("site %s: %d value(s) in %d file(s) left out of kept attributes: not one of "
                 "their defined terms or enumerated values, or text that looked identifying "
                 "(e.g. a name in Body Part Examined or a segment label)", site.code,
                 sum(emptied), len(emptied))


def _count_refused(site, source: str, refused) -> None:
    """Each refused file counts into its study's receipt with the reason, for the site to see
    (a file the node acknowledged before its refusal has no other way back to the site)."""
    for study, patient, reason, sop_uid in refused:
        try:
            count_refusal(site, study, patient, source, reason, sop_uid)
        except Exception as exc:  # noqa: BLE001 - a receipt must never fail the batch
            _internal_error(exc, source)


def _commit(prepared: PreparedBatch) -> None:
    site, source, to_store = prepared.site, prepared.source, prepared.to_store
    replaced: list[str] = []  # the waiting files of instances sent again and stored

    def count(results) -> None:  # (once per try of the batch's transaction: the last stands)
        replaced[:] = _count_stored(site, source, to_store, results, prepared.resent)

    stored = prepared.batch.commit(count)
    for name in replaced:  # only once committed: a crash before leaves a leftover file
        remove_encrypted(name)
    for item in to_store:
        prepared.outcomes[item.index] = (
            IngestOutcome(IngestStatus.STORED, "", item.meta.sop_uid)
            if stored[item.meta.sop_uid].created
            else IngestOutcome(IngestStatus.DUPLICATE, "already stored", item.meta.sop_uid))
    _learn_late_records(to_store)


def _learn_late_records(to_store: list[_ToStore]) -> None:
    """Patients read as having no clinical record when the batch was prepared, whose record
    was committed since: its linking ran before the batch's receipts and images existed, so
    they learn it here, after the batch's commit. A record committed after this check links
    them itself (its linking runs after its commit, so after this batch's)."""
    waiting = {item.pseudonym for item in to_store if not item.has_clinical}
    late = deps.clinical_pseudonyms(waiting)
    if late:
        from .linking import mark_clinical

        mark_clinical(late)
        deps.link_images(late)


def _parse_all(items, site, source, outcomes, to_vault, repeats, refused,
               resent: set[str]) -> Iterator[list[_Parsed]]:
    """Parse each file once, drop duplicates (a few queries for all), find each patient; the
    files parsed, in parts that end once their headers hold ``PARSED_ELEMENTS`` elements (so
    fewer than that plus one file's). A file refused once its header is read goes into
    ``refused`` for its study's receipt; one only waiting for this site's link, into
    ``resent`` (``_taken``)."""
    keyring = get_keyring()
    keyed, unusable = [], {}
    links: dict[str, str | None] = {}  # the site's link of each Patient ID, asked once a batch
    for index, data in enumerate(items):
        try:  # made a Part 10 file and inflated once, here: the parser and the de-identifier
            data = items[index] = inflate_deflated(as_part10(data))  # then read it as it is
        except Rejected as exc:
            unusable[index] = exc
        quick = original_sop_uid(data)
        keyed.append(keyring.uid(quick) if quick else None)
    taken = _taken(site, (k for k in keyed if k), resent)
    parsed, seen, elements = [], set(), 0
    for index, data in enumerate(items):
        if elements >= PARSED_ELEMENTS:
            yield parsed
            parsed, elements = [], 0
        study, sop_uid = None, keyed[index]
        if keyed[index] in taken:
            outcomes[index] = IngestOutcome(IngestStatus.DUPLICATE, "already received", keyed[index])
            continue
        if keyed[index] in seen:
            repeats.append(index)
            continue
        try:
            if index in unusable:
                raise unusable[index]
            ds, start, count = _parse(data)
            sop_uid = keyring.uid(str(ds.SOPInstanceUID).strip("\x00 "))
            if sop_uid != keyed[index] and sop_uid in seen:
                repeats.append(index)
                continue
            if sop_uid != keyed[index] and _taken(site, [sop_uid], resent):
                outcomes[index] = IngestOutcome(IngestStatus.DUPLICATE, "already received", sop_uid)
                continue
            seen.add(sop_uid)
            study = _study_of(ds, keyring)
            study = _with_modality(study, ds)
            patient = identify(ds, site, to_vault, links)
            parsed.append(_Parsed(index, (ds, start), patient, study, sop_uid))
            elements += count
        except Rejected as exc:
            outcomes[index] = IngestOutcome(IngestStatus.REJECTED, str(exc))
            if bytes(data[128:132]) == b"DICM":  # (not a DICOM file at all: nothing to tell)
                refused.append((study or _study_from_bytes(data, keyring), "", str(exc),
                                sop_uid or _content_uid(keyring, data)))
        except Exception as exc:  # noqa: BLE001
            # Parsing works on bytes in memory: only the vault's database can be away here; an
            # OSError is the file's own (a hostile file must not hold the node's spool as an outage).
            outcomes[index] = _internal_error(exc, source, database_only=True)
        finally:
            ds = None  # (a header is held by its part only, once parsed)
    if parsed:
        yield parsed


def _content_uid(keyring, data) -> str:
    """A keyed UID for a refused file whose SOP Instance UID could not be read, made from its
    bytes: the same file sent again is counted once on its receipt (never an original UID's:
    no UID has a colon)."""
    return keyring.uid("content:" + hashlib.sha256(data).hexdigest())


def _deidentify(deidentifier, data: bytes, patient: Patient, header: tuple[Dataset, int]):
    """(parts of the de-identified file, result, catalogue meta, header JSON or None when
    the batch makes it from ``result.dataset``); header parsed already. A known patient's
    file is assembled from remembered element outcomes where it can be (``by_element``)."""
    try:
        known = deidentify_by_element(deidentifier, data, header, patient.pseudonym)
        if known is not None:
            return known
        parts, result = deidentifier.deidentify_parts(
            data, pseudonym=patient.pseudonym, placeholder_id=patient.hospital_hash or "",
            header=header)
    except DeidError as exc:
        raise Rejected(str(exc)) from None
    return parts, result, deps.image_meta(result.dataset), None


def _count_stored(site, source: str, to_store: list[_ToStore], results,
                  resent: set[str]) -> list[str]:
    """The receipts of a committed batch: one update per study, in the batch's transaction.
    Instances sent again that were waiting for this site's link stop waiting (stored by this
    batch, not by a linker: that one's store failed, and its row is gone when it settles);
    the names of their waiting files are returned, to remove once committed. Rows are
    changed in SOP UID or study order, the order every batch locks them in."""
    created = {r.record.sop_uid: r.record for r in results if r.created}
    replaced = []
    if created:
        take_back_refusals(site, list(created))
    if created.keys() & resent:
        patients = {item.meta.sop_uid: item.pseudonym for item in to_store}
        replaced = _drop_waiting(site, PendingImage.objects.filter(
            site=site, sop_uid__in=sorted(created.keys() & resent)), patients)
    studies: dict[str, list] = {}
    for item in to_store:
        record = created.pop(item.meta.sop_uid, None)
        if record is None:
            continue
        group = studies.setdefault(item.meta.study_uid, [item, 0, 0])
        group[1] += 1
        group[2] += record.size
    if studies:
        _add_stored(site, source, [studies[uid] for uid in sorted(studies)])
    return replaced


# Count stored instances into their studies' receipts, creating the missing ones, in one
# statement per batch (executemany of an upsert, the same in SQLite and PostgreSQL): the
# ORM's update-then-insert per study cost ~4 ms of Python each on the finishing thread,
# where every millisecond holds the GIL the de-identifying thread needs. The status rule is
# ``derive_status`` for a row gaining stored instances only (so never REJECTED). A receipt
# begun by a held or refused file learns here that the patient has a clinical record (and,
# begun by a file naming no patient, who the patient is). Its modality is its first
# object's until its first image object's (a presentation state or report may come first).
_ADD_STORED = """
INSERT INTO {t} (site_id, study_uid, patient, modality, source, instances, bytes, stored,
                 pending, held, rejected, problem, has_clinical, first_received,
                 last_received, status)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 0, 0, '', %s, %s, %s, %s)
ON CONFLICT (site_id, study_uid) DO UPDATE SET
    instances = {t}.instances + excluded.instances,
    bytes = {t}.bytes + excluded.bytes,
    stored = {t}.stored + excluded.stored,
    last_received = excluded.last_received,
    patient = CASE WHEN {t}.patient = '' THEN excluded.patient ELSE {t}.patient END,
    modality = CASE WHEN {t}.modality IN ({not_images}) AND excluded.modality NOT IN ({not_images})
                    THEN excluded.modality ELSE {t}.modality END,
    has_clinical = {t}.has_clinical OR excluded.has_clinical,
    status = CASE WHEN {t}.held > 0 THEN %s WHEN {t}.pending > 0 THEN %s
                  WHEN {t}.has_clinical OR excluded.has_clinical THEN %s ELSE %s END
"""


def _add_stored(site, source: str, studies: list) -> None:
    """``record_receipt(stored=count)`` for each (item, count, size) of a batch, at once, in
    the given order (the caller's: by study, so that concurrent batches lock the receipts
    they share in the same order, and wait instead of deadlocking)."""
    from django.db import connection

    table = connection.ops.quote_name(StudyReceipt._meta.db_table)
    now = StudyReceipt._meta.get_field("last_received").get_db_prep_value(
        timezone.now(), connection, prepared=False)
    rows = []
    for item, count, size in studies:
        first = ReceiptStatus.STORED if item.has_clinical else ReceiptStatus.WAITING
        rows.append((site.pk, item.meta.study_uid, item.pseudonym, item.meta.modality or "",
                     source, count, size, count, item.has_clinical, now, now, first,
                     ReceiptStatus.HELD, ReceiptStatus.PENDING, ReceiptStatus.STORED,
                     ReceiptStatus.WAITING))
    not_images = ", ".join(f"'{code}'" for code in deps.non_image_modalities())
    with connection.cursor() as cursor:
        cursor.executemany(_ADD_STORED.format(t=table, not_images=not_images), rows)


class _Taken(Exception):
    """The instance is taken after all (its transaction rolls back): the reason."""




def _copy_name(sop_uid: str, kind: str, resent: bool) -> str:
    """The file of a waiting or held copy; a copy sent again to replace a waiting one has a
    name of its own, so the copy it replaces stays whole until the replacement commits."""
    return f"{sop_uid}.{secrets.token_hex(4)}.{kind}" if resent else f"{sop_uid}.{kind}"


def _replace_waiting(site, sop_uid: str, patient: str) -> list[str]:
    """In the caller's transaction, before its copy is counted: this site's waiting copy of
    an instance sent again makes way (``_drop_waiting``); the name of its file, to remove once
    committed. ``_Taken`` if the instance is no longer only waiting: a linker is storing it
    (its claim, ``linking.link_pending``), or it was stored or held since it was found so."""
    from .linking import _claimable

    rows = PendingImage.objects.filter(_claimable(timezone.now()), site=site, sop_uid=sop_uid)
    replaced = _drop_waiting(site, rows, {sop_uid: patient})
    if not replaced and already_taken(sop_uid):
        raise _Taken("already received")
    return replaced


def _drop_waiting(site, rows, patients: dict[str, str]) -> list[str]:
    """In the caller's transaction: these waiting rows of the site are deleted and uncounted
    from their receipts, for the copies sent again (counted by the caller) to take their place;
    a receipt naming its patient by a row's hospital number now names ``patients[sop_uid]``.
    Each row is uncounted only if this deleted it, still matching ``rows`` (a claim taken
    meanwhile keeps it; as ``linking._settle``). Their file names."""
    names = []
    ordered = rows.order_by("study_uid", "sop_uid")  # (the receipts' lock order)
    for pk, sop_uid, study_uid, hospital_hash, size, name in ordered.values_list(
            "pk", "sop_uid", "study_uid", "hospital_hash", "size", "file_name"):
        if not rows.filter(pk=pk).delete()[0]:
            continue
        StudyReceipt.objects.filter(site=site, study_uid=study_uid).update(
            instances=F("instances") - 1, pending=F("pending") - 1,
            bytes=F("bytes") - max(size - SEALED_OVERHEAD, 0),  # counted unsealed
            patient=Case(When(patient=hospital_hash, then=Value(patients[sop_uid])),
                         default=F("patient")),
            status=_status_sql(pending=-1))
        names.append(name)
    return names


def _keep_pending(out: bytes, meta, site, source: str, hospital_hash: str,
                  resent: bool = False) -> IngestOutcome:
    """Keep an image waiting for its link; ``resent``: in place of the site's waiting copy."""
    name = _copy_name(meta.sop_uid, "pending", resent)
    size = write_encrypted(name, out, site.code, meta.sop_uid)
    retention = timedelta(days=get_settings().pending_retention_days)
    try:
        # The row and its count commit together: a process dying between them would leave a
        # row that makes the replayed file "already pending", never counted on its receipt.
        with transaction.atomic():
            replaced = _replace_waiting(site, meta.sop_uid, hospital_hash) if resent else []
            PendingImage.objects.create(
                site=site, hospital_hash=hospital_hash, sop_uid=meta.sop_uid,
                study_uid=meta.study_uid, file_name=name, size=size, source=source,
                expires_at=timezone.now() + retention,
            )
            # Stored meanwhile by another process (found free when parsed): a linker settling
            # that process's waiting copy deletes its row, and the unique SOP UID no longer
            # stops this one, which its link would count stored a second time. Asked after
            # the row exists: on PostgreSQL its insert waits for such a settling to commit.
            if deps.image_exists(meta.sop_uid):
                raise _Taken("already received")
            record_receipt(site, meta, hospital_hash, source, len(out), pending=1)
            take_back_refusals(site, [meta.sop_uid])
    except (IntegrityError, _Taken) as exc:  # another connection took it a moment ago
        if resent or isinstance(exc, _Taken):  # (no waiting row names the file: it is ours)
            remove_encrypted(name)  # (resent: its own name, the waiting copy stays as it was)
        reason = str(exc) if isinstance(exc, _Taken) else "already pending"
        return IngestOutcome(IngestStatus.DUPLICATE, reason, meta.sop_uid)
    for old in replaced:
        remove_encrypted(old)
    # A clinical record may have arrived while this file was being de-identified.
    pseudonym = deps.pseudonym_for_hospital_number(site, hospital_hash)
    if pseudonym:
        from .linking import link_pending, withdrawal_refusals

        if link_pending(site, hospital_hash, pseudonym).refused:  # (this image, or another)
            refusals = withdrawal_refusals(pseudonym, {meta.study_uid})
            refusal = refusals.get(None, refusals.get(meta.study_uid))
            if refusal is not None:
                return IngestOutcome(IngestStatus.REJECTED, refusal, meta.sop_uid)
        return IngestOutcome(IngestStatus.STORED, "", meta.sop_uid)
    return IngestOutcome(IngestStatus.PENDING, "waiting for the patient's clinical record",
                         meta.sop_uid)


def _hold(out: bytes, meta, site, source: str, patient: Patient, reason: str,
          resent: bool = False) -> IngestOutcome:
    """Hold an image for review; ``resent``: in place of the site's waiting copy."""
    name = _copy_name(meta.sop_uid, "held", resent)
    size = write_encrypted(name, out, site.code, meta.sop_uid)
    fields = dict(site=site, pseudonym=patient.pseudonym or "",
                  hospital_hash=patient.hospital_hash or "", study_uid=meta.study_uid,
                  modality=meta.modality or "", reason=reason[:200], file_name=name, size=size,
                  source=source)
    label = patient.pseudonym or patient.hospital_hash or ""
    try:
        with transaction.atomic():  # the row and its count together, as in ``_keep_pending``
            replaced = _replace_waiting(site, meta.sop_uid, label) if resent else []
            _create_held(meta.sop_uid, fields)
            record_receipt(site, meta, label, source, len(out), held=1)
            take_back_refusals(site, [meta.sop_uid])
    except _Taken as taken:
        if resent:
            remove_encrypted(name)  # (its own name: the waiting copy stays as it was)
        return IngestOutcome(IngestStatus.DUPLICATE, str(taken), meta.sop_uid)
    for old in replaced:
        remove_encrypted(old)
    return IngestOutcome(IngestStatus.HELD, reason, meta.sop_uid)


def _create_held(sop_uid: str, fields: dict) -> None:
    """The held row, or ``_Taken`` when one awaits a decision already."""
    try:
        with transaction.atomic():  # the update below must still run after a refusal
            HeldImage.objects.create(sop_uid=sop_uid, **fields)
    except IntegrityError:
        # Decided before (released, then purged while pending; or rejected): its row is
        # only a record. The copy sent again waits for a decision of its own.
        again = HeldImage.objects.filter(sop_uid=sop_uid).exclude(status=HeldStatus.HELD)
        if not again.update(status=HeldStatus.HELD, decided_by="", decided_at=None,
                            received_at=timezone.now(), **fields):
            raise _Taken("already held") from None


# -- receipts ------------------------------------------------------------------------------


def record_receipt(site, meta, patient: str, source: str, size: int, *, stored: int = 0,
                   pending: int = 0, held: int = 0, rejected: int = 0, problem: str = "",
                   has_clinical: bool = False, count: int = 1) -> None:
    """Count ``count`` new instances (``size`` bytes in all) into their study's receipt
    (created on the study's first one). ``rejected`` of them were refused for ``problem``.

    One UPDATE in the usual case: the status is computed in SQL from the new counts.
    """
    now = timezone.now()
    changes = dict(instances=F("instances") + count, bytes=F("bytes") + size, last_received=now)
    for name, added in (("stored", stored), ("pending", pending), ("held", held),
                        ("rejected", rejected)):
        if added:
            changes[name] = F(name) + added
    if problem:
        changes["problem"] = problem[:200]
    if (meta.modality or "") not in deps.non_image_modalities():
        # a study's modality is its images' (a presentation state may have come first)
        changes["modality"] = Case(When(modality__in=deps.non_image_modalities(),
                                        then=Value(meta.modality or "")), default=F("modality"))
    changes["status"] = _status_sql(held, pending, stored, rejected)
    query = StudyReceipt.objects.filter(site=site, study_uid=meta.study_uid)
    if query.update(**changes):
        return
    first = StudyReceipt(site=site, study_uid=meta.study_uid, patient=patient,
                         modality=meta.modality or "", source=source, instances=count, bytes=size,
                         stored=stored, pending=pending, held=held, rejected=rejected,
                         problem=problem[:200], first_received=now, last_received=now,
                         has_clinical=has_clinical)
    first.status = first.derive_status()
    try:
        with transaction.atomic():
            first.save(force_insert=True)
    except IntegrityError:  # the study's first instances raced: count into the winner
        query.update(**changes)


def _status_sql(held: int = 0, pending: int = 0, stored: int = 0, rejected: int = 0):
    """The receipt's status after adding these counts (same rule as derive_status)."""
    return Case(
        When(GreaterThan(F("held") + held, 0), then=Value(ReceiptStatus.HELD)),
        When(GreaterThan(F("pending") + pending, 0), then=Value(ReceiptStatus.PENDING)),
        When(Q(rejected__gt=-rejected) & Q(stored__lte=-stored),
             then=Value(ReceiptStatus.REJECTED)),
        When(has_clinical=True, then=Value(ReceiptStatus.STORED)),
        default=Value(ReceiptStatus.WAITING),
    )


def refresh_receipt_status(query) -> None:
    query.update(status=_status_sql())


def count_refusal(site, study, patient: str, source: str, reason: str, sop_uid: str) -> None:
    """Count a refused file into its study's receipt, once per keyed SOP UID: a study sent
    again (or a spool replayed) does not count its refused files twice; the reason and the
    time are updated. A file whose SOP UID could not be read comes with a keyed UID of its
    bytes (``_content_uid``): counted once too."""
    with transaction.atomic():
        if sop_uid:
            _, new = RefusedInstance.objects.get_or_create(
                site=site, sop_uid=sop_uid, defaults={"study_uid": study.study_uid})
            if not new:
                StudyReceipt.objects.filter(site=site, study_uid=study.study_uid).update(
                    problem=reason[:200], last_received=timezone.now())
                return
        record_receipt(site, study, patient, source, 0, rejected=1, problem=reason)


def count_deleted(site, study_uid: str, sop_uid: str, was: str, problem: str) -> None:
    """An instance counted ``was`` ("pending", "held" or "stored") in its receipt was deleted
    (its retention ran out, a data manager rejected it, or its object was lost from the
    warehouse): it now counts as refused, with ``problem`` for the site to see, so the study
    no longer says its images wait (or are stored)."""
    receipt = StudyReceipt.objects.filter(site=site, study_uid=study_uid)
    with transaction.atomic():
        _, new = RefusedInstance.objects.get_or_create(
            site=site, sop_uid=sop_uid, defaults={"study_uid": study_uid})
        if new:
            receipt.update(**{was: F(was) - 1}, rejected=F("rejected") + 1,
                           problem=problem[:200], status=_status_after(was, rejected=1))
        else:  # (counted refused already: it stays one instance)
            receipt.update(**{was: F(was) - 1}, instances=F("instances") - 1,
                           status=_status_after(was))


def _status_after(was: str, rejected: int = 0):
    return _status_sql(**{was: -1}, rejected=rejected)


def take_back_refusals(site, sop_uids: list[str]) -> None:
    """Instances now stored, pending or held that were counted refused before: their
    refusals are taken back (the new count has them), and a receipt left with none loses
    its reason. One query when, as usual, none was refused."""
    refusals = []
    for first in range(0, len(sop_uids), 500):
        refusals += RefusedInstance.objects.filter(
            site=site, sop_uid__in=sop_uids[first:first + 500]).values_list("pk", "study_uid")
    if not refusals:
        return
    RefusedInstance.objects.filter(pk__in=[pk for pk, _ in refusals]).delete()
    per_study: dict[str, int] = {}
    for _, study_uid in refusals:
        per_study[study_uid] = per_study.get(study_uid, 0) + 1
    for study_uid, count in sorted(per_study.items()):  # (the receipts' lock order)
        StudyReceipt.objects.filter(site=site, study_uid=study_uid).update(
            instances=F("instances") - count, rejected=F("rejected") - count,
            problem=Case(When(rejected__lte=count, then=Value("")), default=F("problem")),
            status=_status_sql(rejected=-count))
