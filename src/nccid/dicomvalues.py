"""Keys that stand for a DICOM element's value, for per-process memo tables (pure: no Django).

Most headers of a study repeat their neighbours' values (equipment, series, the
de-identification markers), so the encoded bytes and the DICOM JSON of an element are
memoised on what determines them: tag, VR, encoding and value. A key exists only for the
value types whose encoding is fully determined by the key; anything else gets None (not
memoised, encoded by pydicom each time).
"""

from __future__ import annotations

import struct
from collections.abc import Hashable

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import PersonName

_SCALARS = (str, UID, int, float, bytes)
CONSTANT = "_nccid_constant"  # attribute marking a value object that is never changed


def value_key(value: object) -> Hashable | None:
    """A hashable key for ``value``, equal for values that encode alike; None if unsure."""
    kind = type(value)
    if kind in _SCALARS or value is None:
        return (kind, value)
    if kind is PersonName:
        return (kind, str(value), value.original_string)
    if kind is MultiValue or kind is list or kind is tuple:
        keys = tuple(value_key(v) for v in value)
        return None if any(k is None for k in keys) else (kind, keys)
    if is_constant(value):  # e.g. the de-identification method code sequence
        return ("constant", id(value))
    return None


def is_constant(value: object) -> bool:
    return bool(getattr(value, CONSTANT, False))


def mark_constant(value):
    """Mark ``value`` (e.g. a Sequence built once and shared) as never changed; returns it."""
    setattr(value, CONSTANT, True)
    return value


def charset_key(charset: object) -> Hashable:
    """A hashable form of a Specific Character Set value (a string or several)."""
    if isinstance(charset, (list, tuple, MultiValue)):
        return tuple(str(c) for c in charset)
    return str(charset)


class Memo(dict):
    """A dict that forgets everything when it grows past ``limit`` (bounded memory).

    It also keeps alive the constant values whose ``id`` is in its keys, so that an id can
    never be reused by another object while a key names it."""

    def __init__(self, limit: int = 50_000) -> None:
        super().__init__()
        self.limit = limit
        self._alive: list = []

    def remember(self, key: Hashable, result, keep: object = None):
        """Store ``result`` under ``key``; ``keep`` is an object the key names by id."""
        if len(self) >= self.limit:
            self.clear()
            self._alive.clear()
        if keep is not None:
            self._alive.append(keep)
        self[key] = result
        return result


# -- element text without pydicom's conversion ---------------------------------------------

_PLAIN_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "LO", "SH", "UI"})
_UNSIGNED_SHORT = {True: struct.Struct("<H"), False: struct.Struct(">H")}


def element_text(ds: Dataset, tag: int) -> str:
    """An element's value as text (values of a multi-valued one joined by a backslash), or ""
    when absent: what ``str(ds[tag].value)`` gives, stripped of spaces and NULs.

    A header element that is still raw (not yet converted by pydicom) and is a single plain
    ASCII value of a short text VR, or one US number, is read straight from its bytes: the
    catalogue fields and the burned-in checks would otherwise convert a dozen elements per
    file. Anything else goes through pydicom (``_converted_text``)."""
    element = ds.get_item(tag)
    if element is None:
        return ""
    if isinstance(element, RawDataElement):
        raw = element.value
        if raw is None:
            return ""
        vr = element.VR or _dictionary_vr(tag)
        if vr in _PLAIN_TEXT_VRS and b"\\" not in raw and raw.isascii():
            return raw.decode("ascii").strip(" \x00")
        if vr == "US" and len(raw) == 2:
            return str(_UNSIGNED_SHORT[element.is_little_endian].unpack(raw)[0])
        return _converted_text(ds, tag)
    return _as_text(element.value)  # converted already (or set by the de-identification)


def _converted_text(ds: Dataset, tag: int) -> str:
    try:
        value = ds[tag].value
    except Exception:  # noqa: BLE001 - a malformed value must not stop cataloguing or checks
        return ""
    return _as_text(value)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1", errors="replace").strip(" \x00")
    return str(value).strip(" \x00")


def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None
