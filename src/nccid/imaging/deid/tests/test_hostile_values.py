"""Values that hide identifiers where the profile keeps an element: safe-listed private tags
holding text or sequences, URLs and retired or trial variants of removed attributes, malformed
dates and times, and values read to a delimiter that are not sequences."""

from __future__ import annotations

import struct
from datetime import date, timedelta
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian

from nccid.imaging.deid import Deidentifier, DeidError
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes

NAME = "Hidden^Person"


def _kept_private(out: Dataset) -> dict[int, object]:
    return {int(e.tag): e.value for e in out if e.tag.is_private}


def _raw(ds: Dataset, tag: int, vr: str | None, value: bytes) -> None:
    """``value`` under ``tag`` as a file would hand it over (pydicom refuses to build some)."""
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, vr is None, True)


@pytest.mark.parametrize(("vr", "value", "kept"), [
    ("IS", b"1000", True),
    ("IS", b"1000\\500 ", True),
    ("IS", NAME.encode(), False),            # text under a numeric parameter
    ("LO", b"1000", False),                  # not the VR the safe list declares
    (None, b"1000", True),                   # implicit VR: read as the declared IS
    ("UN", b"1000", True),
    (None, NAME.encode(), False),
])
def test_a_safe_listed_private_element_is_kept_only_when_it_is_the_number_it_should_be(
        kr, person, vr, value, kept):
    ds = synthetic_instance(person)
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    _raw(ds, 0x0019100C, vr, value)
    out = Deidentifier(kr).deidentify(ds, pseudonym="NCCID-A").dataset
    private = _kept_private(out)
    assert (0x0019100C in private) is kept
    assert NAME not in str(out)


def test_a_safe_listed_private_element_holding_a_sequence_is_removed(kr, person):
    ds = synthetic_instance(person)
    item = Dataset()
    item.PatientName, item.PatientID = NAME, person.hospital_number
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "SQ", [item])
    ds.private_block(0x0019, "SIEMENS MR HEADER").add_new(0x0E, "FD", [0.5, -0.5, 0.0])  # kept
    data, _ = Deidentifier(kr).deidentify_bytes(to_bytes(ds), pseudonym="NCCID-A")
    out = dcmread(BytesIO(data))
    assert set(_kept_private(out)) == {0x00190010, 0x0019100E}
    assert NAME.encode() not in data and person.hospital_number.encode() not in data


def test_binary_safe_values_must_be_finite_numbers_of_whole_length(kr, person):
    ds = synthetic_instance(person)
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0E, "UN", b"Hidden^Person")   # 13 bytes: not a whole number of FD values
    block.add_new(0x27, "UN", struct.pack("<2d", 1.0, float("nan")))
    out = Deidentifier(kr).deidentify(ds, pseudonym="NCCID-A").dataset
    assert set(_kept_private(out)) <= {0x00190010}


@pytest.mark.parametrize(("keyword", "vr", "value"), [
    ("RetrieveURL", "UR", "https://pacs.example/wado?studyUID=1.2.826.0.1.3680043.10.1"),
    ("ContactURI", "UR", "mailto:hidden.person@example.org"),
    ("PlacerOrderNumberProcedure", "SH", "ORD-HIDDEN-1"),
    ("FillerOrderNumberImagingServiceRequestRetired", "SH", "ORD-HIDDEN-2"),
    ("PatientBirthDateInAlternativeCalendar", "LO", "5740-07-12"),
    ("PatientDeathDateInAlternativeCalendar", "LO", "5790-01-01"),
    ("RequestedProcedureDescriptionTrial", "LO", "for Hidden Person"),
    ("MoveOriginatorApplicationEntityTitle", "AE", "WARD7_PC"),
])
def test_unlisted_urls_and_retired_or_trial_variants_of_identifying_attributes_are_removed(
        deid, person, keyword, vr, value):
    ds = synthetic_instance(person)
    setattr(ds, keyword, value)
    out = deid.deidentify(ds, pseudonym="NCCID-A").dataset
    assert keyword not in out


def test_harmless_unlisted_attributes_and_coding_scheme_urls_are_kept(deid, person):
    ds = synthetic_instance(person)
    ds.Manufacturer, ds.ManufacturerModelName = "Acme", "Model S"
    ds.CodingSchemeURL = "http://snomed.info/sct"
    out = deid.deidentify(ds, pseudonym="NCCID-A").dataset
    assert (out.Manufacturer, out.ManufacturerModelName) == ("Acme", "Model S")
    assert out.CodingSchemeURL == "http://snomed.info/sct"


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_dates_and_times_with_more_in_them_than_a_date_never_survive(kr, person, profile):
    ds = synthetic_instance(person)
    ds.StudyDate = "20200402"
    ds.SeriesDate = "20200402-20200417"          # a range: not a stored value
    ds.ContentDate = "20200403 Hidden Person"
    ds.AcquisitionDateTime = "20200403101500 Hidden"
    ds.StudyTime = "101500 Hidden"
    ds.ContentTime = "101500.25"
    out = Deidentifier(kr, profile).deidentify(ds, pseudonym="NCCID-A").dataset
    text = str(out)
    assert "Hidden" not in text and "20200417" not in text
    moved = 0 if profile == "retain-dates" else kr.date_shift_days("NCCID-A")
    expected = (date(2020, 4, 2) + timedelta(days=moved)).strftime("%Y%m%d")
    assert out.StudyDate == expected and out.ContentTime == "101500.25"
    for keyword in ("SeriesDate", "ContentDate", "AcquisitionDateTime", "StudyTime"):
        assert keyword not in out or out[keyword].value in ("", None)


def test_a_value_read_to_a_delimiter_that_is_not_a_sequence_refuses_the_file(kr, person):
    ds = synthetic_instance(person)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = to_bytes(ds)
    kept = struct.pack("<HHL", 0x0008, 0x0070, len(b"ACME")) + b"ACME"
    item = struct.pack("<HHL", 0x0010, 0x0010, 14) + b"Hidden^Person "
    hidden = (struct.pack("<HHL", 0x0008, 0x0070, 0xFFFFFFFF)
              + struct.pack("<HHL", 0xFFFE, 0xE000, len(item)) + item
              + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    ds.Manufacturer = "ACME"
    data = to_bytes(ds)
    assert kept in data
    with pytest.raises(DeidError, match=r"\(0008,0070\) has an undefined length"):
        Deidentifier(kr).deidentify_bytes(data.replace(kept, hidden), pseudonym="NCCID-A")


def test_a_burned_in_reason_names_the_lists_sop_class_not_the_files(deid, person):
    ds = synthetic_instance(person)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.9990005036"
    reason = deid.deidentify(ds, pseudonym="NCCID-A").held_reason
    assert "1.2.840.10008.5.1.4.1.1.7:" in reason and "9990005036" not in reason


def test_the_checker_flags_what_the_engine_now_removes(person):
    ds = synthetic_instance(person, plant=False)
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    _raw(ds, 0x0019100C, "IS", NAME.encode())
    ds.add_new(0x00081190, "UR", "https://pacs.example/wado?studyUID=1.2.826.0.1.3680043.10.1")
    ds.ContentDate = "20200403 Hidden"
    reasons = {f.reason for f in Checker().check_dataset(ds)}
    assert "safe-listed private attribute that is not a IS" in reasons
    assert "UID-shaped text not under the keyed 2.25 root (an original UID?)" in reasons
    assert "date with more in it than a date" in reasons


def test_an_element_pydicom_cannot_convert_refuses_the_file_with_a_reason(kr, person):
    """A value of unknown representation (here a stray delimiter read as a top-level element)
    is the file's fault: a DeidError naming no value, whichever path meets it first."""
    ds = synthetic_instance(person)
    ds.StudyDescription = "x"
    data = to_bytes(ds)
    stray = struct.pack("<HH2sH", 0xFFFE, 0xE0DD, b"UN", 0) + b"\x00\x00\x00\x00"
    described = struct.pack("<HH2sH", 0x0008, 0x1030, b"LO", 2) + b"x "
    assert described in data
    data = data.replace(described, described + stray)
    header = parse_header(data, force=False)
    assert 0xFFFEE0DD in header[0]._dict  # read as an element of the dataset
    try:
        assert deidentify_by_element(Deidentifier(kr), data, header, "NCCID-A") is None
    except DeidError:
        pass
    with pytest.raises(DeidError):
        Deidentifier(kr).deidentify_bytes(data, pseudonym="NCCID-A")
