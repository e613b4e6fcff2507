"""The fast header encoder writes exactly what pydicom's dcmwrite would, byte for byte."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmwrite

from nccid.imaging.deid import DeidError
from nccid.imaging.deid.engine import _fast_encode, _read_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes

PYDICOM_FILES = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))


def _deidentified(deid, data: bytes):
    try:
        ds, _pixel = _read_header(data)
        deid.deidentify(ds, pseudonym="NCCID-TEST000000000000")
    except DeidError:
        return None
    return ds


def _dcmwrite(ds) -> bytes:
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("modality", ["CT", "DX", "MR", "CR"])
def test_synthetic_files_encode_identically(deid, person, modality):
    ds = _deidentified(deid, to_bytes(synthetic_instance(person, modality=modality, plant=True)))
    fast = _fast_encode(ds)
    assert fast is not None  # the common case takes the fast path
    assert fast == _dcmwrite(ds)


def test_pydicom_test_files_encode_identically_or_fall_back(deid):
    fast_path = 0
    for path in PYDICOM_FILES:
        ds = _deidentified(deid, path.read_bytes())
        if ds is None:
            continue
        try:
            expected = _dcmwrite(ds)
        except Exception:  # noqa: BLE001 - then the fast path must not pretend either
            assert _fast_encode(ds) is None, path.name
            continue
        fast = _fast_encode(ds)
        if fast is not None:
            fast_path += 1
            assert fast == expected, path.name
    assert fast_path > 20
