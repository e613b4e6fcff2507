"""The stored header JSON is strict JSON (RFC 8259: no NaN or Infinity, which ``JSON.parse``
refuses) and follows PS3.18 F.2.5: an empty value inside a multi-valued number is ``null``,
the element's other values kept. A number no JSON can hold is left out where it is (one value
of several: null; a single value: its element, from its item only), logged by tag path only."""

from __future__ import annotations

import json
import logging
import struct
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.dicom_json import header_json


def _raw(ds: Dataset, tag: int, vr: str, raw: bytes) -> None:
    """A value as a file hands it over (pydicom builds no such value itself)."""
    raw += b" " * (len(raw) % 2)
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)


def _strict(data: bytes) -> dict:
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(data, parse_constant=refuse)


def _read(ds: Dataset) -> Dataset:
    return dcmread(BytesIO(to_bytes(ds)), stop_before_pixels=True)


@pytest.fixture
def person():
    return people(1, seed=5)[0]


def test_an_empty_value_in_a_multi_valued_number_is_null_at_any_depth(person):
    ds = synthetic_instance(person, plant=False)
    _raw(ds, 0x00280030, "DS", b"0.5\\")         # Pixel Spacing, its second value empty
    _raw(ds, 0x00281050, "DS", b"\\40")          # Window Center, its first
    _raw(ds, 0x00181310, "US", b"")              # (an empty US: no Value, as before)
    item = Dataset()
    _raw(item, 0x00280030, "DS", b"0.5\\")
    _raw(item, 0x00200013, "IS", b"7\\\\9")      # Instance Number (VM 1, sent as three)
    ds.ViewCodeSequence = [item]
    body = _strict(header_json(dataset=_read(ds)))
    assert body["00280030"] == {"vr": "DS", "Value": [0.5, None]}
    assert body["00281050"] == {"vr": "DS", "Value": [None, 40.0]}
    nested = body["00540220"]["Value"][0]
    assert nested["00280030"] == {"vr": "DS", "Value": [0.5, None]}
    assert nested["00200013"] == {"vr": "IS", "Value": [7, None, 9]}
    again = Dataset.from_json(json.dumps(body))  # what a DICOMweb reader makes of it
    assert list(again.PixelSpacing) == [0.5, None]


@pytest.mark.parametrize("value", [b"1e400", b"-1e400", b"NaN", b"Infinity"])
def test_a_number_json_cannot_hold_is_left_out_and_logged_by_tag(person, caplog, value):
    ds = synthetic_instance(person, plant=False)
    _raw(ds, 0x00180050, "DS", value)                               # Slice Thickness
    _raw(ds, 0x00181041, "FD", struct.pack("<d", float("inf")))     # Contrast volume, binary
    item = Dataset()
    _raw(item, 0x00180050, "DS", value)
    ds.ViewCodeSequence = [item]
    with caplog.at_level(logging.WARNING, logger="nccid.warehouse"):
        data = header_json(dataset=_read(ds))
    body = _strict(data)
    assert "00180050" not in body and "00181041" not in body
    assert body["00540220"] == {"vr": "SQ", "Value": [{}]}  # only the number left its item
    assert "00080018" in body and "00100020" in body  # the rest is there
    logged = caplog.text
    assert "(0018,0050)" in logged and "(0018,1041)" in logged
    assert "(0054,0220)[0](0018,0050)" in logged
    assert value.decode() not in logged and "inf" not in logged.lower()


def test_both_de_identification_paths_write_the_same_strict_json(person):
    """The engine's dataset and the element-by-element path (and its memo) agree."""
    engine = Deidentifier(Keyring(bytes(range(32))))
    ds = synthetic_instance(person, plant=False)
    _raw(ds, 0x00280030, "DS", b"0.5\\")
    _raw(ds, 0x00180050, "DS", b"1e400")  # dropped by the de-identification: not a number
    data = to_bytes(ds)
    out, _ = engine.deidentify_bytes(data, pseudonym="NCCID-A")
    expected = _strict(header_json(out))
    assert expected["00280030"] == {"vr": "DS", "Value": [0.5, None]}
    assert "Value" not in expected["00180050"]
    for _ in range(2):  # the first time, then from the memo
        made = deidentify_by_element(engine, data, parse_header(data), "NCCID-A")
        assert made is not None and _strict(made[3]) == expected


def test_an_empty_value_in_a_multi_valued_text_is_null_and_reads_back_as_empty(person):
    ds = synthetic_instance(person, plant=False)
    _raw(ds, 0x00080008, "CS", b"ORIGINAL\\\\AXIAL")   # Image Type, its second value empty
    _raw(ds, 0x00081090, "LO", b"\\Model")              # Manufacturer's Model Name, its first
    item = Dataset()
    _raw(item, 0x00080100, "SH", b"A\\")                # Code Value, its last
    ds.ViewCodeSequence = [item]
    body = _strict(header_json(dataset=_read(ds)))
    assert body["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", None, "AXIAL"]}
    assert body["00081090"] == {"vr": "LO", "Value": [None, "Model"]}
    assert body["00540220"]["Value"][0]["00080100"] == {"vr": "SH", "Value": ["A", None]}
    back = Dataset.from_json(body)
    assert list(back.ImageType) == ["ORIGINAL", "", "AXIAL"]


def test_a_multi_valued_person_name_with_an_empty_value_is_null_beside_its_groups():
    """pydicom's own conversion fails on it (IndexError): the element was left out."""
    ds = Dataset()
    _raw(ds, 0x00081060, "PN", b"ONE^A\\\\TWO^B")    # Name of Physician(s) Reading Study
    body = _strict(header_json(dataset=_read_plain(ds)))
    assert body["00081060"] == {"vr": "PN", "Value": [{"Alphabetic": "ONE^A"}, None,
                                                        {"Alphabetic": "TWO^B"}]}


def _read_plain(ds: Dataset) -> Dataset:
    from pydicom.filewriter import dcmwrite
    out = BytesIO()
    dcmwrite(out, ds, implicit_vr=False, little_endian=True)
    return dcmread(BytesIO(out.getvalue()), force=True)


def test_an_empty_sequence_has_no_value_and_reads_back_empty(person):
    ds = synthetic_instance(person, plant=False)
    ds.RequestAttributesSequence = []
    item = Dataset()
    item.ReferencedImageSequence = []
    ds.ViewCodeSequence = [item]
    body = _strict(header_json(dataset=_read(ds)))
    assert body["00400275"] == {"vr": "SQ"}
    assert body["00540220"]["Value"][0]["00081140"] == {"vr": "SQ"}
    back = Dataset.from_json(body)
    assert len(back.RequestAttributesSequence) == 0
