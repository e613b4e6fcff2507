"""Valid DICOM the import once refused is stored: float and double float pixel data (the
pixel element copied as received), files without a preamble or without any file meta (given
both), uncompressed YBR_FULL_422 (two thirds of RGB's bytes). Files that are not DICOM are
still refused, saying why."""

from __future__ import annotations

import io
import struct
import zipfile
from io import BytesIO

import numpy as np
import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from nccid.imaging.intake import ingest
from nccid.imaging.outcome import IngestStatus
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import get_warehouse

from .conftest import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
FLOATS = {"FloatPixelData": (32, "<f4", 0x7FE00008), "DoubleFloatPixelData": (64, "<f8", 0x7FE00009)}


def _stored(outcome) -> tuple[bytes, object]:
    assert outcome.status is IngestStatus.STORED, outcome.reason
    data = get_warehouse().read(ImageRecord.objects.get(sop_uid=outcome.sop_uid).storage_key)
    return data, dcmread(BytesIO(data))


def float_instance(person, keyword: str, syntax):
    bits, dtype, _ = FLOATS[keyword]
    ds = synthetic_instance(person, patient_id=person.nhs_number, rows=16, columns=16)
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = bits
    setattr(ds, keyword, np.linspace(-1, 1, 16 * 16, dtype=dtype).tobytes())
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PARAMETRIC_MAP
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _element_bytes(data: bytes, tag: int) -> bytes:
    """The pixel element as encoded: from its tag to the end of the file."""
    return data[data.rindex(struct.pack("<HH", tag >> 16, tag & 0xFFFF)):]


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian],
                         ids=["implicit", "explicit"])
@pytest.mark.parametrize("keyword", list(FLOATS))
def test_float_pixel_data_is_stored_as_received(site, person_factory, keyword, syntax):
    ds = float_instance(person_factory(81), keyword, syntax)
    data = to_bytes(ds)
    stored, read = _stored(ingest(data, site, "test"))
    tag = FLOATS[keyword][2]
    assert _element_bytes(stored, tag) == _element_bytes(data, tag)
    assert read[tag].value == ds[tag].value and read.file_meta.TransferSyntaxUID == syntax
    assert read.PatientID != ds.PatientID


def test_float_pixel_data_shorter_than_its_image_is_refused(site, person_factory):
    ds = float_instance(person_factory(82), "FloatPixelData", ExplicitVRLittleEndian)
    ds.FloatPixelData = ds.FloatPixelData[:-64]
    outcome = ingest(to_bytes(ds), site, "test")
    assert outcome.status is IngestStatus.REJECTED
    assert outcome.reason == "pixel data too short: 960 of 1024 bytes (truncated?)"


def _bare(ds, implicit: bool) -> bytes:
    del ds.file_meta
    ds.preamble = None  # (a dataset read from a file would be written with one)
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_a_dataset_without_preamble_or_file_meta_is_stored_with_both(site, person_factory,
                                                                     implicit):
    ds = synthetic_instance(person_factory(83), patient_id=person_factory(83).nhs_number)
    pixels = ds.PixelData
    data = _bare(ds, implicit)
    assert data[128:132] != b"DICM" and b"DICM" not in data[:4]
    stored, read = _stored(ingest(data, site, "test"))
    assert stored[128:132] == b"DICM" and read.PixelData == pixels
    assert read.file_meta.TransferSyntaxUID == (ImplicitVRLittleEndian if implicit
                                                else ExplicitVRLittleEndian)
    assert read.file_meta.MediaStorageSOPInstanceUID == read.SOPInstanceUID != ds.SOPInstanceUID


def test_a_file_without_its_preamble_is_stored(site, person_factory):
    person = person_factory(84)
    ds = synthetic_instance(person, patient_id=person.nhs_number)
    stored, read = _stored(ingest(to_bytes(ds)[128:], site, "test"))
    assert stored[128:132] == b"DICM" and read.PixelData == ds.PixelData


def test_a_bare_dataset_with_compressed_pixel_data_is_refused_saying_why(site, person_factory):
    person = person_factory(85)
    ds = dcmread(pydicom.data.get_testdata_file("JPEG2000.dcm"))
    ds.PatientID = person.nhs_number
    data = _bare(ds, implicit=False)
    outcome = ingest(data, site, "test")
    assert outcome.status is IngestStatus.REJECTED
    assert "without file meta whose pixel data is compressed" in outcome.reason


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "not an image")
    return buffer.getvalue()


@pytest.mark.parametrize("data", [
    b"name,nhs_number\nnobody,123\n" * 50,
    _zip(),
    b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    # group 0008 at byte 0, but no SOP UIDs to be read: not taken for a bare dataset
    b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100" + b"\x00" * 64,
], ids=["text", "zip", "png", "random", "group-8-without-uids"])
def test_files_that_are_not_dicom_are_still_refused(site, data):
    outcome = ingest(data, site, "test")
    assert outcome.status is IngestStatus.REJECTED
    assert outcome.reason.startswith("not a DICOM file (no 'DICM' marker at byte 128")


def test_uncompressed_ybr_full_422_is_stored(site, person_factory):
    """pydicom's sample's pixels in a radiograph (its secondary capture would be held)."""
    person = person_factory(86)
    sample = dcmread(pydicom.data.get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    ds = synthetic_instance(person, modality="DX", patient_id=person.nhs_number,
                            rows=sample.Rows, columns=sample.Columns)
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration",
                    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData"):
        setattr(ds, keyword, sample[keyword].value)
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 2  # Y for each pixel, Cb Cr for two
    _, read = _stored(ingest(to_bytes(ds), site, "test"))
    assert read.PixelData == ds.PixelData and read.PhotometricInterpretation == "YBR_FULL_422"
