"""The bytes an uncompressed image needs are pydicom's own expected length (YBR_FULL_422's
subsampling included) for every native image of pydicom's test files."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom.data
from pydicom import dcmread
from pydicom.pixels.utils import get_expected_length

from nccid.imaging.deid.engine import native_pixel_bytes

PYDICOM_FILES = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))


def test_native_images_need_what_pydicom_expects():
    compared, subsampled = 0, 0
    for path in PYDICOM_FILES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(path, defer_size=1024)
                expected = get_expected_length(ds)
        except Exception:  # noqa: BLE001, S112 - not an image, or not one pydicom can size
            continue
        syntax = ds.file_meta.get("TransferSyntaxUID", None)
        if syntax is None or syntax.is_compressed or "PixelData" not in ds \
                or not isinstance(expected, int):
            continue
        assert native_pixel_bytes(ds) == expected, path.name
        compared += 1
        subsampled += ds.PhotometricInterpretation == "YBR_FULL_422"
    assert compared >= 20 and subsampled >= 1
