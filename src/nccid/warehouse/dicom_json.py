"""The DICOM JSON (PS3.18 F.2) header stored beside each image (pure: no Django).

The same as pydicom's ``Dataset.to_json_dict`` with bulk data left out, element by element,
but each element's JSON is memoised on what determines it (tag, VR, encoding, character set
and raw or de-identified value, and for a sequence as read the Pixel Representation): the
files of a series repeat almost every value, so most elements cost a dictionary lookup
instead of a conversion.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Hashable
from io import BytesIO

import pydicom
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from nccid.dicomvalues import Memo, charset_key, is_constant, value_key

log = logging.getLogger("nccid.warehouse")

OMITTED = "nccid:omitted"
BULK_THRESHOLD = 1024
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # Float, Double Float, Pixel Data
PIXEL_REPRESENTATION = 0x00280103
PLAIN, AMBIGUOUS, SEQUENCE = 0, 1, 2  # what an element's dictionary entry says of its VR
_KIND: dict[int, int] = {}
_JSON = Memo()  # element key -> (its JSON, whether bulk data was left out inside it)


def header_json(data: bytes | None = None, dataset: Dataset | None = None) -> bytes:
    """The header of an image as DICOM JSON, without pixel data or other bulk data."""
    if dataset is None:
        dataset = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, force=True)
    charset_id = charset_key(dataset.get("SpecificCharacterSet", default_encoding))
    body = {}
    for tag in dataset.keys():
        value = element_json(dataset, tag, charset_id)
        if value is not None:
            body[f"{tag:08X}"] = value
    return dump_json(body)


def dump_json(body: dict) -> bytes:
    """The stored form of a header's DICOM JSON object (tags as keys)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


# Tokens Python's json writes for numbers that are not finite (-Infinity holds Infinity).
NOT_FINITE_TOKENS = (b"NaN", b"Infinity")


def strict_header(data: bytes) -> tuple[bytes, list[str]]:
    """A stored header as strict JSON, and the tag paths of the numbers left out to make it
    so (``data`` itself, and none, when it holds no NaN or Infinity). Releases before the
    writer was strict stored them (a DS of ``1e400``); they are left out as the writer now
    leaves them: a single value takes its element out (of its item only), one of several is
    ``null``. A byte check first: only a header holding such a token is parsed."""
    if not any(token in data for token in NOT_FINITE_TOKENS):
        return data, []
    body = json.loads(data)  # (json reads NaN and Infinity as floats)
    left_out = drop_not_finite(body)
    return (dump_json(body), left_out) if left_out else (data, [])


def drop_not_finite(body: dict, where: str = "") -> list[str]:
    """Leave the numbers that are not finite out of a DICOM JSON object, in place, as
    ``_to_json_dict`` does; returns their tag paths, e.g. ``(5200,9230)[1](0018,0050)``."""
    left_out: list[str] = []
    for key in list(body):
        element, path = body[key], where + _where(int(key, 16))
        values = element.get("Value") if isinstance(element, dict) else None
        if not isinstance(values, list):
            continue
        if element.get("vr") == "SQ":
            for index, item in enumerate(values):
                if isinstance(item, dict):
                    left_out += drop_not_finite(item, f"{path}[{index}]")
        elif any(_not_finite(v) for v in values):
            left_out.append(path)
            if len(values) == 1:
                del body[key]
            else:
                element["Value"] = [None if _not_finite(v) else v for v in values]
    return left_out


def element_json(dataset: Dataset, tag: int, charset_id) -> dict | None:
    """One element of ``header_json``: its DICOM JSON value, or None when it is left out
    (pixel data, bulk data, or a value that cannot be converted)."""
    if tag in PIXEL_TAGS:  # small images' pixels fall under the bulk threshold
        return None
    entry = _element_json(dataset, tag, charset_id)
    if entry is None:
        return None
    value, has_bulk = entry
    if has_bulk:
        if value.get("BulkDataURI") == OMITTED:
            return None
        value = _strip_bulk(value)
    return value


def _element_json(dataset: Dataset, tag: int, charset_id) -> tuple[dict, bool] | None:
    key = _key(dataset, dataset.get_item(tag), tag, charset_id)
    if key is not None:
        known = _JSON.get(key)
        if known is not None:
            return known
    # No ``config.strict_reading()`` here (pydicom's to_json_dict uses it): it switches a
    # process-wide setting, and a node thread receiving meanwhile would then refuse a sender's
    # non-conformant UID. A value that cannot be converted still leaves its element out.
    try:
        element = dataset[tag]
        omitted: list[bool] = []
        value = _to_json_dict(element, lambda _e: omitted.append(True) or OMITTED, _where(tag))
    except _NotFinite:
        _log_not_finite(_where(tag))
        return None
    except Exception as exc:  # noqa: BLE001 - pydicom's message may quote the value
        log.warning("header JSON: element (%04X,%04X) left out (%s)", tag >> 16, tag & 0xFFFF,
                    type(exc).__name__)
        return None
    entry = (value, bool(omitted))
    if key is not None:
        keep = element.value if is_constant(element.value) else None
        _JSON.remember(key, entry, keep)
    return entry


class _NotFinite(ValueError):
    """A single number JSON cannot hold (NaN or infinite): its element is left out."""


def _to_json_dict(element, bulk_handler, where: str) -> dict:
    """pydicom's ``to_json_dict``, items of sequences alike, but strict JSON (RFC 8259) and
    PS3.18 F.2.5's ``null`` for an empty value of a multi-valued number (pydicom raises on
    it). A number that is not finite is left out where it is, never more: one value of a
    multi-valued element is ``null`` at its position (the others keep theirs), a single value
    leaves its element out (``_NotFinite``), inside a sequence from its item only; each is
    logged by its tag path (``where``), never its value."""
    vr = element.VR
    if vr == "SQ":
        if not element.value:  # PS3.18 F.2.5: an empty attribute has no Value (pydicom: [])
            return {"vr": vr}
        return {"vr": vr, "Value": [_item_json(item, bulk_handler, f"{where}[{index}]")
                                    for index, item in enumerate(element.value)]}
    if vr in _TEXT_NUMBERS and element.VM > 1 and any(v in ("", None) for v in element.value):
        number = _TEXT_NUMBERS[vr]
        value = {"vr": vr, "Value": [None if v in ("", None) else number(v) for v in element.value]}
    elif vr in _TEXT and element.VM > 1 and any(v in ("", None) for v in element.value):
        value = {"vr": vr, "Value": [_one_text_value(element, v) for v in element.value]}
    else:
        value = element.to_json_dict(bulk_data_element_handler=bulk_handler,
                                     bulk_data_threshold=BULK_THRESHOLD)
    values = value.get("Value", ())
    if any(_not_finite(v) for v in values):
        if len(values) == 1:
            raise _NotFinite
        _log_not_finite(where)
        value["Value"] = [None if _not_finite(v) else v for v in values]
    return value


def _one_text_value(element, value):
    """One value of a multi-valued text element as pydicom writes it alone (a person name's
    groups, say), or PS3.18 F.2.5's ``null`` when it is empty (pydicom writes ``""``, and
    fails on an empty person name)."""
    if value in ("", None):
        return None
    alone = DataElement(element.tag, element.VR, value)
    return alone.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=BULK_THRESHOLD)["Value"][0]


def _item_json(item: Dataset, bulk_handler, where: str) -> dict:
    """One sequence item's DICOM JSON: an element holding only a number that is not finite
    is left out of it (logged), its neighbours and the other items kept."""
    body = {}
    for tag in item.keys():
        path = where + _where(tag)
        try:
            body[f"{tag:08X}"] = _to_json_dict(item[tag], bulk_handler, path)
        except _NotFinite:
            _log_not_finite(path)
    return body


def _not_finite(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _where(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _log_not_finite(where: str) -> None:
    log.warning("header JSON: a number that is not finite left out at %s", where)


_TEXT_NUMBERS = {"DS": float, "IS": int}
# Text VRs that can hold several values (PS3.5 6.4; LT, ST, UT and UR hold one).
_TEXT = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "PN", "SH", "TM", "UC", "UI"})


def _key(dataset: Dataset, element, tag: int, charset_id):
    """What determines the element's JSON, or None when the conversion depends on more
    (ambiguous VRs resolved from other elements, private tags read by their creator)."""
    if (tag >> 16) & 1:
        return None
    vr = element.VR
    if isinstance(element, RawDataElement):
        if element.value is None:
            return None
        if vr is None or vr == "UN" or vr == "SQ":  # the dictionary's VR may apply
            kind = dictionary_kind(tag)
            if kind == AMBIGUOUS and vr != "SQ":
                return None
            if kind == SEQUENCE:  # its items' "US or SS" elements follow the Pixel Representation
                representation = pixel_representation_key(dataset)
                if representation is None:
                    return None
                return (tag, vr, element.is_implicit_VR, element.is_little_endian, charset_id,
                        element.value, representation)
        elif " or " in vr:
            return None
        return (tag, vr, element.is_implicit_VR, element.is_little_endian, charset_id,
                element.value)
    if not vr or " or " in vr:
        return None
    identity = value_key(element.value)
    return None if identity is None else (tag, vr, charset_id, identity)


def dictionary_kind(tag: int) -> int:
    """AMBIGUOUS when the dictionary gives the element several VRs (pydicom picks one from
    other elements: US or SS from the Pixel Representation), SEQUENCE when it is a sequence
    or unknown (read as one when its length is undefined), PLAIN otherwise."""
    kind = _KIND.get(tag)
    if kind is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "SQ"
        kind = _KIND[tag] = AMBIGUOUS if " or " in vr else SEQUENCE if vr == "SQ" else PLAIN
    return kind


def pixel_representation_key(dataset: Dataset) -> Hashable | None:
    """What decides the "US or SS" elements in ``dataset``'s sequences as pydicom reads them:
    its Pixel Representation, else the one it inherited (pydicom's ``_pixel_rep``); None when
    unsure."""
    element = dataset._dict.get(PIXEL_REPRESENTATION)
    if element is None:
        return ("inherited", getattr(dataset, "_pixel_rep", None))
    if isinstance(element, RawDataElement):
        return ("raw", element.VR, element.is_implicit_VR, element.is_little_endian, element.value)
    identity = value_key(element.value)
    return None if identity is None else ("value", identity)


def _strip_bulk(node):
    if isinstance(node, dict):
        return {k: _strip_bulk(v) for k, v in node.items()
                if not (isinstance(v, dict) and v.get("BulkDataURI") == OMITTED)}
    if isinstance(node, list):
        return [_strip_bulk(v) for v in node]
    return node
