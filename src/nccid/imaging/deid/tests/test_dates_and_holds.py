"""Birth date to the year, the per-patient date shift, and burned-in text held for review."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.synthetic.dicom import synthetic_instance


def test_birth_date_is_reduced_to_the_year(deid, person):
    out = deid.deidentify(synthetic_instance(person), pseudonym="NCCID-A").dataset
    assert out.PatientBirthDate == f"{person.birth_date.year}0101"
    assert out.StudyDate == "20200402"  # full dates kept in the default profile
    assert out.PatientAge and out.PatientSex == person.sex


def test_shift_profile_moves_every_date_of_a_patient_by_the_keyed_offset(kr, person):
    pseudonym = kr.pseudonym(person.nhs_number)
    days = kr.date_shift_days(pseudonym)
    assert days != 0
    ds = synthetic_instance(person)
    item = Dataset()
    item.ContentDate = "20200401"
    item.ObservationDateTime = "20200401120000"
    ds.ReferencedSeriesSequence = [item]
    out = Deidentifier(kr, "shift-dates").deidentify(ds, pseudonym=pseudonym).dataset
    expected = (date(2020, 4, 2) + timedelta(days=days)).strftime("%Y%m%d")
    assert out.StudyDate == out.SeriesDate == out.AcquisitionDate == expected
    assert out.StudyTime == "101500"
    nested = out.ReferencedSeriesSequence[0]
    assert nested.ContentDate == (date(2020, 4, 1) + timedelta(days=days)).strftime("%Y%m%d")
    assert "ObservationDateTime" not in nested or nested.ObservationDateTime.endswith("120000")
    birth = date(person.birth_date.year, 1, 1) + timedelta(days=days)
    assert out.PatientBirthDate == f"{birth.year}0101"
    # The same patient at another site, another day: same offset.
    again = Deidentifier(kr, "shift-dates").deidentify(
        synthetic_instance(person, study=2, study_date=date(2021, 1, 5)), pseudonym=pseudonym).dataset
    assert again.StudyDate == (date(2021, 1, 5) + timedelta(days=days)).strftime("%Y%m%d")


def test_placeholder_then_assign_equals_direct_deidentification(kr, person):
    pseudonym = kr.pseudonym(person.nhs_number)
    engine = Deidentifier(kr, "shift-dates")
    direct, _ = engine.deidentify_bytes(
        _bytes(synthetic_instance(person)), pseudonym=pseudonym)
    waiting, result = engine.deidentify_bytes(
        _bytes(synthetic_instance(person)), pseudonym=None, placeholder_id="PENDING-7")
    assert not result.dates_shifted
    assert engine.assign_patient_bytes(waiting, pseudonym) == direct


def _bytes(ds):
    from nccid.synthetic.dicom import to_bytes

    return to_bytes(ds)


@pytest.mark.parametrize(("change", "held"), [
    ({"BurnedInAnnotation": "YES"}, "Burned In Annotation"),
    ({"Modality": "US"}, "modality US"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "secondary capture"),
    ({"SeriesDescription": "Dose Report"}, "series description"),
    ({}, None),
])
def test_burned_in_text_is_held(deid, person, change, held):
    ds = synthetic_instance(person)
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    result = deid.deidentify(ds, pseudonym="NCCID-A")
    if held is None:
        assert result.held_reason is None and not result.held
    else:
        assert held in result.held_reason and result.held
        assert person.family_name not in result.held_reason
