"""An element whose declared VR contradicts its tag's dictionary VR is treated as the dictionary
says: a date sent as SH or LO is still a date (kept only when well formed, and then shifted
like every other date), anything else kept under a wrong VR is removed. Both paths, both
profiles, at any depth."""

from __future__ import annotations

import json
from datetime import date, timedelta
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.dicom_json import header_json

SERIES_DATE, ACQUISITION_DATE, CONTENT_DATE = 0x00080021, 0x00080022, 0x00080023
ACQUISITION_DATE_TIME, BIRTH_DATE, BODY_PART = 0x0008002A, 0x00100030, 0x00180015
NAME_AND_DATE = "SMITH^JOHN seen 02/04/2020"


def _mislabelled(person) -> bytes:
    """An explicit-VR file whose dates (top level and in a kept sequence) and one kept code
    string are declared under text VRs."""
    ds = synthetic_instance(person, plant=False, patient_id=person.nhs_number)
    ds[SERIES_DATE] = DataElement(SERIES_DATE, "SH", "20200402")
    ds[ACQUISITION_DATE] = DataElement(ACQUISITION_DATE, "LO", NAME_AND_DATE)
    ds[BIRTH_DATE] = DataElement(BIRTH_DATE, "LO", person.birth_date.strftime("%Y%m%d"))
    ds[BODY_PART] = DataElement(BODY_PART, "LT", "CHEST SMITH^JOHN")
    item = Dataset()
    item[CONTENT_DATE] = DataElement(CONTENT_DATE, "SH", "20200401")
    item[ACQUISITION_DATE_TIME] = DataElement(ACQUISITION_DATE_TIME, "LO", NAME_AND_DATE)
    ds.ReferencedSeriesSequence = [item]
    return to_bytes(ds)


def _both_paths(deid: Deidentifier, data: bytes, pseudonym: str):
    """(engine's file, by-element's file): the same bytes and header JSON."""
    parts, result = deid.deidentify_parts(data, pseudonym=pseudonym, header=parse_header(data))
    engine = b"".join(parts)
    made = deidentify_by_element(deid, data, parse_header(data), pseudonym)
    assert made is not None, "this file should go element by element"
    by_element, _, _, header = made
    assert b"".join(by_element) == engine
    assert json.loads(header) == json.loads(header_json(dataset=result.dataset))
    assert b"SMITH" not in header and b"02/04/2020" not in header
    return dcmread(BytesIO(engine))


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_a_date_declared_under_another_vr_is_kept_only_as_a_date_and_shifted(kr, person, profile):
    deid = Deidentifier(kr, profile)
    pseudonym = kr.pseudonym(person.nhs_number)
    days = kr.date_shift_days(pseudonym) if profile == "shift-dates" else 0

    def moved(day: date) -> str:
        return (day + timedelta(days=days)).strftime("%Y%m%d")

    data = _mislabelled(person)
    for _ in range(2):  # the second time from the by-element memo
        out = _both_paths(deid, data, pseudonym)
        assert (out[SERIES_DATE].VR, out[SERIES_DATE].value) == ("DA", moved(date(2020, 4, 2)))
        assert out.StudyDate == out.SeriesDate  # one offset: no file gives it away
        assert (out[ACQUISITION_DATE].VR, out[ACQUISITION_DATE].value) == ("DA", "")
        assert out[BIRTH_DATE].VR == "DA"
        assert out.PatientBirthDate == f"{moved(date(person.birth_date.year, 1, 1))[:4]}0101"
        assert BODY_PART not in out  # a kept code string that is not encoded as one
        nested = out.ReferencedSeriesSequence[0]
        assert (nested[CONTENT_DATE].VR, nested[CONTENT_DATE].value) == ("DA", moved(date(2020, 4, 1)))
        assert ACQUISITION_DATE_TIME not in nested or nested[ACQUISITION_DATE_TIME].value == ""
        assert b"SMITH" not in to_bytes(out)


def test_values_under_their_dictionary_vr_an_alternative_or_a_number_for_a_number_are_kept(
        kr, person):
    deid = Deidentifier(kr)
    ds = synthetic_instance(person, plant=False, patient_id=person.nhs_number)
    ds.SmallestImagePixelValue = 0  # US or SS in the dictionary: US agrees
    ds[0x00280106].VR = "US"
    ds[0x00280010] = DataElement(0x00280010, "SS", ds.Rows)  # Rows: US in the dictionary
    ds[0x00281053] = DataElement(0x00281053, "IS", "2")  # Rescale Slope: DS
    out = _both_paths(deid, to_bytes(ds), "NCCID-A")
    assert out.SmallestImagePixelValue == 0 and out.StudyDate == "20200402"
    assert (out[0x00280010].VR, out.Rows) == ("SS", ds.Rows)
    assert (out[0x00281053].VR, out.RescaleSlope) == ("IS", 2)


def test_check_flags_a_kept_value_whose_declared_vr_contradicts_the_dictionary(person):
    ds = dcmread(BytesIO(_mislabelled(person)))
    findings = Checker().check_dataset(ds, "f.dcm")
    contradicted = {f.tag for f in findings if "contradicts the dictionary" in f.reason}
    assert {"(0008,0021)", "(0008,0022)", "(0018,0015)",
            "(0008,1115)[0](0008,0023)", "(0008,1115)[0](0008,002A)"} <= contradicted
    assert all("SMITH" not in json.dumps(f.__dict__) for f in findings)


def test_a_multi_valued_date_under_another_vr_keeps_only_its_well_formed_dates(kr, person):
    deid = Deidentifier(kr, "shift-dates")
    pseudonym = kr.pseudonym(person.nhs_number)
    days = kr.date_shift_days(pseudonym)
    ds = synthetic_instance(person, plant=False, patient_id=person.nhs_number)
    calibrated = 0x00181200  # Date of Last Calibration: DA, 1-n
    ds[calibrated] = DataElement(calibrated, "LO", ["20200101", NAME_AND_DATE, "20200301"])
    out = _both_paths(deid, to_bytes(ds), pseudonym)
    assert out[calibrated].VR == "DA"
    assert list(out[calibrated].value) == [
        (day + timedelta(days=days)).strftime("%Y%m%d") for day in (date(2020, 1, 1), date(2020, 3, 1))]
