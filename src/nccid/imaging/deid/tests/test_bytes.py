"""deidentify_bytes: every transfer syntax, pixel data kept as received, hostile input refused."""

from __future__ import annotations

import random
import struct
import time
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from nccid.imaging.deid import DeidError
from nccid.imaging.deid.engine import _read_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes


@pytest.mark.parametrize("name", [
    "JPEG2000.dcm", "SC_rgb_jpeg_gdcm.dcm", "MR_small_RLE.dcm", "JPEG-LL.dcm",
    "CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm",
])
def test_pixel_data_is_kept_exactly_as_received(deid, name):
    path = get_testdata_file(name)
    data = open(path, "rb").read()
    original = dcmread(path)
    out, result = deid.deidentify_bytes(data, pseudonym="NCCID-A")
    written = dcmread(BytesIO(out))
    assert written.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert written.PixelData == original.PixelData  # encapsulated fragments byte for byte
    assert written.SOPInstanceUID == result.sop_uid != original.SOPInstanceUID
    assert written.PatientID == "NCCID-A" and written.PatientIdentityRemoved == "YES"
    assert written.file_meta.MediaStorageSOPInstanceUID == result.sop_uid


def test_file_without_preamble_or_file_meta_is_accepted(deid, person):
    ds = synthetic_instance(person)
    del ds.file_meta
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=False)
    raw = buffer.getvalue()
    assert raw[128:132] != b"DICM"
    out, result = deid.deidentify_bytes(raw, pseudonym="NCCID-A")
    written = dcmread(BytesIO(out))
    assert written.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert written.PixelData == ds.PixelData and written.PatientID == "NCCID-A"
    assert person.nhs_number.encode() not in out


def test_large_image_is_not_copied_needlessly(deid, person):
    data = to_bytes(synthetic_instance(person, rows=1024, columns=1024))
    out, _ = deid.deidentify_bytes(data, pseudonym="NCCID-A")
    pixel_start = data.index(b"\xe0\x7f\x10\x00OW")
    assert out.endswith(data[pixel_start:])


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    DeflatedExplicitVRLittleEndian])
def test_bytes_after_the_last_pixel_are_not_passed_on(deid, person, syntax):
    """Native pixel data longer than its image: the surplus (which could carry anything) is
    cut, the image itself is byte for byte the same (deflated too: the whole dataset is
    compressed, the pixel data inside it is native)."""
    ds = synthetic_instance(person, rows=16, columns=16)
    ds.file_meta.TransferSyntaxUID = syntax
    image = bytes(ds.PixelData)
    ds.PixelData = image + f"{person.family_name} {person.nhs_number}".encode().ljust(40)
    out, _ = deid.deidentify_bytes(to_bytes(ds), pseudonym="NCCID-A")
    assert person.family_name.encode() not in out and person.nhs_number.encode() not in out
    assert dcmread(BytesIO(out)).PixelData == image


def _hostile_inputs(person) -> dict[str, bytes]:
    good = to_bytes(synthetic_instance(person))
    pixel = good.index(b"\xe0\x7f\x10\x00OW")
    rng = random.Random(5)
    huge_pixel = bytearray(good)
    struct.pack_into("<L", huge_pixel, pixel + 8, 0xFFFFFFF0)
    huge_text = bytearray(good)
    at = huge_text.index(b"\x10\x00\x10\x00PN") + 6  # PatientName length field (2 bytes)
    struct.pack_into("<H", huge_text, at, 0xFFFE)
    encapsulated = good[:pixel] + b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff" + \
        b"\xfe\xff\x00\xe0" + struct.pack("<L", 0x7FFFFFFF) + b"\x00" * 16
    return {
        "empty": b"",
        "garbage": bytes(rng.getrandbits(8) for _ in range(4096)),
        "text": b"name,nhs_number\nnobody,123\n" * 50,
        "preamble only": b"\x00" * 128 + b"DICM",
        "truncated header": good[:300],
        "truncated pixels": good[: pixel + 500],
        "huge pixel length": bytes(huge_pixel),
        "huge element length": bytes(huge_text),
        "huge fragment": encapsulated,
        "no SOP UID": _without_sop(person),
    }


def _without_sop(person) -> bytes:
    ds = synthetic_instance(person)
    del ds.SOPInstanceUID
    return to_bytes(ds)


def test_hostile_files_raise_a_clear_error_quickly(deid, person):
    for label, data in _hostile_inputs(person).items():
        started = time.monotonic()
        with pytest.raises(DeidError) as caught:
            deid.deidentify_bytes(data, pseudonym="NCCID-A")
        assert time.monotonic() - started < 5, label
        message = str(caught.value)
        assert message and person.family_name not in message and person.hospital_number not in message


def test_every_truncation_of_a_file_fails_cleanly_or_yields_a_complete_file(deid, person):
    good = to_bytes(synthetic_instance(person, rows=8, columns=8))
    for cut in range(0, len(good), 7):
        try:
            out, result = deid.deidentify_bytes(good[:cut], pseudonym="NCCID-A")
        except DeidError:
            continue
        # Accepted: then it must be a readable, de-identified file (never a half-written one).
        written = dcmread(BytesIO(out))
        assert written.PatientIdentityRemoved == "YES"
        assert person.nhs_number.encode() not in out and person.family_name.encode() not in out


def test_header_reader_stops_before_pixels(person):
    ds, pixel = _read_header(to_bytes(synthetic_instance(person, rows=16, columns=16)))
    assert "PixelData" not in ds and sum(len(p) for p in pixel) == 12 + 16 * 16 * 2
    assert isinstance(ds, Dataset)
