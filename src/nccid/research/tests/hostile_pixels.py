"""Compressed pixel data that aborts GDCM: pydicom's own JPEG Lossless and JPEG-LS samples with
one header byte changed (found by fuzzing; either kills the decoding process with SIGABRT).
Only the pixel elements are taken from the samples; the identity stays synthetic."""

from __future__ import annotations

import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_fragmented_frames

# sample file -> (offset in its first frame, the byte written there)
ABORTING = {"JPEG-LL.dcm": (15, 0x7C), "MR_small_jpeg_ls_lossless.dcm": (6, 0xF8)}
VALID = ("JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEGLSNearLossless_16.dcm")
_PIXEL_KEYWORDS = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel",
                   "PixelRepresentation", "PhotometricInterpretation")


def with_pixels_of(ds: pydicom.Dataset, sample: str, broken: bool = True) -> pydicom.Dataset:
    """``ds`` given the sample's compressed pixels (the aborting frame when ``broken``)."""
    source = pydicom.dcmread(get_testdata_file(sample))
    for keyword in _PIXEL_KEYWORDS:
        setattr(ds, keyword, source.data_element(keyword).value)
    for keyword in ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            delattr(ds, keyword)
    frame = bytearray(b"".join(next(generate_fragmented_frames(source.PixelData,
                                                               number_of_frames=1))))
    if broken:
        offset, value = ABORTING[sample]
        frame[offset] = value
    ds.file_meta.TransferSyntaxUID = source.file_meta.TransferSyntaxUID
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    return ds
