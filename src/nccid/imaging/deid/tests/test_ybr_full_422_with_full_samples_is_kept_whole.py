"""Uncompressed YBR_FULL_422 pixel data of full three-sample length (an image decompressed
from JPEG whose label was kept, as pydicom's decoder says) is kept whole: only what follows
its full samples is a surplus. A subsampled image (two thirds of that) loses only what
follows it, as any image does."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from nccid.synthetic.dicom import synthetic_instance, to_bytes

ROWS = COLUMNS = 4
FULL = ROWS * COLUMNS * 3  # Y, Cb and Cr for every pixel
SUBSAMPLED = FULL // 3 * 2  # Y for every pixel, Cb and Cr for every two
SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]


def _ybr_422(person, pixels: bytes, syntax) -> bytes:
    ds = synthetic_instance(person, modality="DX", rows=ROWS, columns=COLUMNS)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = pixels
    ds.file_meta.TransferSyntaxUID = syntax
    return to_bytes(ds)


def _pixels_out(deid, data: bytes) -> bytes:
    out, _ = deid.deidentify_bytes(data, pseudonym="NCCID-A")
    return dcmread(BytesIO(out)).PixelData


@pytest.mark.parametrize("syntax", SYNTAXES, ids=["explicit", "implicit", "deflated"])
def test_full_sample_pixel_data_is_kept_whole(deid, person, syntax):
    image = bytes(range(FULL))
    assert _pixels_out(deid, _ybr_422(person, image, syntax)) == image


@pytest.mark.parametrize("syntax", SYNTAXES, ids=["explicit", "implicit", "deflated"])
@pytest.mark.parametrize("length", [SUBSAMPLED, FULL], ids=["subsampled", "full"])
def test_only_what_follows_the_image_is_cut(deid, person, syntax, length):
    image = bytes(range(length))
    surplus = person.nhs_number.encode()
    out, _ = deid.deidentify_bytes(_ybr_422(person, image + surplus, syntax), pseudonym="NCCID-A")
    assert dcmread(BytesIO(out)).PixelData == image and surplus not in out
