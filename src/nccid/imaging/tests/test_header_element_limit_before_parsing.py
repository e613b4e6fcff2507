"""A header of implausibly many elements is refused from a walk of its bytes, before pydicom
parses it (a million empty elements cost seconds of CPU and hundreds of MB to parse); the
walk counts top-level elements only, whatever the sequences hold."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from nccid.imaging import intake
from nccid.imaging.intake import Rejected, read_received
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def _instance(syntax) -> Dataset:
    ds = synthetic_instance(people(1, seed=4)[0], plant=False, rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _with_empty_elements(data: bytes, count: int, implicit: bool) -> bytes:
    """``count`` empty private elements inserted before the pixel data, in tag order."""
    pixel = data.rfind(b"\xe0\x7f\x10\x00")
    pack = (lambda k: struct.pack("<HHI", 0x0011 + 2 * (k >> 16), k & 0xFFFF, 0)) if implicit \
        else (lambda k: struct.pack("<HH2sH", 0x0011 + 2 * (k >> 16), k & 0xFFFF, b"SH", 0))
    return data[:pixel] + b"".join(pack(k) for k in range(count)) + data[pixel:]


def _top_level_count(ds: Dataset) -> int:
    return len([tag for tag in ds.keys() if tag != 0x7FE00010])


@pytest.fixture
def never_parsed(monkeypatch):
    def parse_header(*args, **kwargs):
        raise AssertionError("parsed before the element count was checked")

    monkeypatch.setattr(intake, "parse_header", parse_header)
    monkeypatch.setattr(intake, "MAX_HEADER_ELEMENTS", 1_000)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_too_many_elements_are_refused_before_parsing(never_parsed, syntax):
    data = _with_empty_elements(to_bytes(_instance(syntax)), 1_000, syntax.is_implicit_VR)
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    for read in (lambda: intake.read_header(data),
                 lambda: read_received(data[:meta_end], [data[meta_end:]])):
        with pytest.raises(Rejected, match="more than 1,000 elements in the header"):
            read()


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_only_top_level_elements_count_not_what_sequences_hold(monkeypatch, syntax):
    ds = _instance(syntax)
    items = []
    for number in range(40):  # nested: a sequence in each item, each of 20 elements
        inner = Dataset()
        inner.ReferencedSOPInstanceUID = f"1.2.3.{number}"
        inner.is_undefined_length_sequence_item = number % 2 == 0  # both kinds of item
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        item.ReferencedImageSequence = [inner] * 20
        item["ReferencedImageSequence"].is_undefined_length = True
        item.is_undefined_length_sequence_item = True
        items.append(item)
    ds.ReferencedImageSequence = items
    ds["ReferencedImageSequence"].is_undefined_length = True
    data = to_bytes(ds)
    assert b"\xfe\xff\xdd\xe0" in data  # (undefined-length sequences, walked item by item)
    top = _top_level_count(ds)
    monkeypatch.setattr(intake, "MAX_HEADER_ELEMENTS", top)
    intake._check_element_count(data)  # the sequence's 40 × 20 elements are not counted
    monkeypatch.setattr(intake, "MAX_HEADER_ELEMENTS", top - 1)
    with pytest.raises(Rejected, match="elements in the header"):
        intake._check_element_count(data)
