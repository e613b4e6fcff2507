"""'nccid deid check' finds identifiers planted where a value-by-value text scan does not
look: after the Pixel Data, in binary and numeric values, in a public tag the dictionary does
not know, in free text the profile removes, and in a telephone number written +44 (0)."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import JPEGBaseline8Bit

from nccid.imaging.deid.check import check_paths
from nccid.synthetic.dicom import synthetic_instance, to_bytes


@pytest.fixture
def clean(deid, kr, person) -> bytes:
    data, _ = deid.deidentify_bytes(to_bytes(synthetic_instance(person, plant=False)),
                                    pseudonym=kr.pseudonym(person.nhs_number))
    return data


def _with(clean: bytes, plant) -> bytes:
    ds = dcmread(BytesIO(clean))
    plant(ds)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _after_pixel_data(person) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, DataElement(0x7FE10010, "LO", "ACME PACS"))
    write_data_element(fp, DataElement(0x7FE11001, "LO", f"{person.family_name} {person.nhs_number}"))
    return fp.getvalue()


def _reasons(tmp_path, data: bytes) -> set[str]:
    path = tmp_path / "f.dcm"
    path.write_bytes(data)
    findings, scanned, _ = check_paths([path])
    assert scanned == 1
    return {f.reason for f in findings}


NHS = "NHS/CHI-number-shaped digits with a valid check digit"
REMOVED = "attribute de-identification removes"

CASES = {  # planted value -> a reason the checker must give
    "nhs_in_unknown_public_UN": (
        lambda ds, p: ds.add_new(0x00089999, "UN", f"{p.family_name} {p.nhs_number}".encode()),
        f"{NHS}, in a binary value"),
    "name_in_unknown_public_LO": (
        lambda ds, p: ds.add_new(0x00089999, "LO", f"{p.family_name}^{p.given_name}"),
        "public attribute the data dictionary does not know (de-identification removes it)"),
    "nhs_in_OB": (
        lambda ds, p: ds.add_new(0x00420011, "OB", f"Patient NHS {p.nhs_number} ".encode()),
        f"{NHS}, in a binary value"),
    "nhs_in_IS": (lambda ds, p: setattr(ds, "AcquisitionNumber", p.nhs_number), NHS),
    "nhs_in_DS": (lambda ds, p: setattr(ds, "PatientWeight", p.nhs_number), NHS),
    "name_in_LT": (lambda ds, p: setattr(ds, "ImageComments", f"seen {p.family_name}"), REMOVED),
    "name_in_UT": (lambda ds, p: ds.add_new(0x0040A160, "UT", f"{p.family_name}^{p.given_name}"),
                   "person-name-shaped text (FAMILY^GIVEN)"),
    "phone_with_0": (lambda ds, p: setattr(ds, "Manufacturer", "Call +44 (0)161 496 0000"),
                     "telephone number"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_planted_identifier_is_found(tmp_path, clean, person, case):
    plant, reason = CASES[case]
    assert _reasons(tmp_path, clean) == set()
    assert reason in _reasons(tmp_path, _with(clean, lambda ds: plant(ds, person)))


def test_elements_after_the_pixel_data_are_checked(tmp_path, clean, person):
    assert "private attribute not on the safe list" in _reasons(
        tmp_path, clean + _after_pixel_data(person))


@pytest.mark.parametrize("encapsulated", [False, True])
def test_the_pixels_are_not_read_as_values(tmp_path, clean, person, encapsulated):
    """Pixel data (here text shaped like an NHS number and a name) is image, not a value:
    the burned-in rules' concern, not the scanner's; stepped over, native or encapsulated,
    to the elements after it."""
    pixels = f"{person.nhs_number} {person.family_name}^{person.given_name} ".encode() * 100
    ds = dcmread(BytesIO(clean))
    if encapsulated:
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([pixels])
    else:
        ds.PixelData = pixels[:len(ds.PixelData)]
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert _reasons(tmp_path, out.getvalue()) == set()
    assert "private attribute not on the safe list" in _reasons(
        tmp_path, out.getvalue() + _after_pixel_data(person))
