"""``element_text`` (the catalogue fields and the burned-in checks) reads short raw values
straight from their bytes; it must give what pydicom's conversion gives, element for element."""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement

from nccid.dicomvalues import _converted_text, element_text
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

PYDICOM_FILES = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))


def _header(data: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(BytesIO(data), stop_before_pixels=True, force=True)


def _readable(data: bytes) -> bool:
    try:
        _header(data).keys()
    except Exception:  # noqa: BLE001 - pydicom's own test files include broken ones
        return False
    return True


def _files() -> list[tuple[str, bytes]]:
    found = [(path.name, path.read_bytes()) for path in PYDICOM_FILES]
    for person in people(3, seed=5, site_prefix="ET"):
        for modality in ("DX", "CT"):
            found.append((f"synthetic-{modality}", to_bytes(synthetic_instance(
                person, modality=modality, patient_id=person.nhs_number))))
    return [(name, data) for name, data in found if _readable(data)]


FILES = _files()


def test_most_of_pydicoms_test_files_take_part():
    assert len(FILES) > 70


@pytest.mark.parametrize(("name", "data"), FILES, ids=[name for name, _ in FILES])
def test_element_text_is_pydicoms_text_for_every_element(name, data):
    fast, slow = _header(data), _header(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag in list(fast.keys()):
            expected = _converted_text(slow, tag)
            assert element_text(fast, tag) == expected, f"{name} {tag:08X} raw"
            try:
                fast[tag]  # converted now, as the de-identification leaves many elements
            except Exception:  # noqa: BLE001, S112 - pydicom cannot convert it: stays raw
                continue
            assert element_text(fast, tag) == expected, f"{name} {tag:08X} converted"
    absent = 0x00771077  # a private tag no file here has
    assert absent not in fast and element_text(fast, absent) == ""


def test_raw_values_are_read_without_converting_them():
    person = people(1, seed=5, site_prefix="ET")[0]
    ds = _header(to_bytes(synthetic_instance(person, modality="CT")))
    assert element_text(ds, 0x00080060) == "CT"                 # Modality (CS)
    assert element_text(ds, 0x00280010) == str(_header(to_bytes(  # Rows (US)
        synthetic_instance(person, modality="CT"))).Rows)
    assert isinstance(ds.get_item(0x00080060), RawDataElement)  # both left unconverted
    assert isinstance(ds.get_item(0x00280010), RawDataElement)
