"""Birth date to the year, the per-patient date shift, and burned-in text held for review."""

from __future__ import annotations

from datetime import date, timedelta
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from nccid.identity.keys import SHIFT_BACKWARD, SHIFT_BOTH_WAYS
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


@pytest.mark.parametrize("direction", [-1, 1])
def test_a_date_the_shift_would_take_past_year_1_or_9999_is_removed(kr, person, direction):
    """Shifted out of the calendar, a date cannot be written: it is removed, as one that
    cannot be read is, and the file goes through (placeholder and assignment too). Forward
    only in an installation shifting both ways (new ones shift backward only)."""
    scheme = SHIFT_BACKWARD if direction < 0 else SHIFT_BOTH_WAYS
    pseudonym = next(p for p in (kr.pseudonym(f"{n:010d}") for n in range(50))
                     if kr.date_shift_days(p, scheme=scheme) * direction > 0)
    days = kr.date_shift_days(pseudonym, scheme=scheme)
    edge, other = ("00010101", "99991231") if direction < 0 else ("99991231", "00010101")
    engine = Deidentifier(kr, "shift-dates", date_shift=scheme)
    ds = synthetic_instance(person)
    ds.ContentDate, ds.AcquisitionDate = edge, other
    direct, _ = engine.deidentify_bytes(_bytes(ds), pseudonym=pseudonym)
    waiting, _ = engine.deidentify_bytes(_bytes(ds), pseudonym=None, placeholder_id="PENDING-7")
    assert engine.assign_patient_bytes(waiting, pseudonym) == direct
    out = dcmread(BytesIO(direct))
    assert "ContentDate" not in out
    moved = date(int(other[:4]), int(other[4:6]), int(other[6:])) + timedelta(days=days)
    assert out.AcquisitionDate == moved.strftime("%Y%m%d")


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


@pytest.mark.parametrize("modality", ["", "CR"])
@pytest.mark.parametrize(("sop_class", "held"), [
    ("1.2.840.10008.5.1.4.1.1.6.1", "ultrasound image storage"),       # US Image
    ("1.2.840.10008.5.1.4.1.1.6.2", "ultrasound image storage"),       # Enhanced US Volume
    ("1.2.840.10008.5.1.4.1.1.3.1", "ultrasound multi-frame"),         # US Multi-frame
    ("1.2.840.10008.5.1.4.1.1.77.1.1.1", "visible light"),             # Video Endoscopic
    ("1.2.840.10008.5.1.4.1.1.77.1.5.1", "visible light"),             # Ophthalmic Photography
    ("1.2.840.10008.5.1.4.1.1.1.1", None),                             # Digital X-Ray
    ("1.2.840.10008.5.1.4.1.1.66", None),                              # Raw Data (not under 6)
])
def test_images_of_burned_in_sop_classes_are_held_whatever_their_modality(
        deid, person, modality, sop_class, held):
    ds = synthetic_instance(person)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.Modality = modality
    del ds.BurnedInAnnotation
    reason = deid.deidentify(ds, pseudonym="NCCID-A").held_reason
    assert reason is None if held is None else held in reason


_NUMERIC = {"Rows", "Columns"}


def _device_rules() -> list[dict]:
    from nccid.imaging.deid.profile import load_data

    return load_data("burned_in.json")["device_rules"]


def _apply_fields(ds, fields: dict[str, str]) -> None:
    """Give ``ds`` values that meet (or, via ``fields``' values, miss) device-rule patterns."""
    for keyword, value in fields.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, int(value) if keyword in _NUMERIC else value)


def _meeting(pattern: str) -> str | None:
    first = pattern.lstrip("=").split("|")[0]
    return None if pattern == "=" else first.title() if not pattern.startswith("=") else first


def _missing(pattern: str) -> str:
    return "Acme" if pattern == "=" else "7" if pattern.startswith("=") else "Zzz"


@pytest.mark.parametrize("rule", _device_rules(), ids=lambda r: "+".join(r["all"]))
def test_every_device_rule_holds_its_devices_and_only_them(deid, person, rule):
    """A file meeting all of a rule's conditions is held, with the rule's reason; missing any
    one of them, it is not (mixed case on purpose: matching ignores case)."""
    met = {keyword: _meeting(pattern) for keyword, pattern in rule["all"].items()}
    ds = synthetic_instance(person)
    _apply_fields(ds, met)
    result = deid.deidentify(ds, pseudonym="NCCID-A")
    assert result.held and result.held_reason == f"device on the burned-in list: {rule['why']}"
    for keyword, pattern in rule["all"].items():
        ds = synthetic_instance(person)
        _apply_fields(ds, {**met, keyword: _missing(pattern)})
        assert deid.deidentify(ds, pseudonym="NCCID-A").held_reason is None, keyword


def test_device_rules_are_well_formed():
    rules = _device_rules()
    assert len(rules) >= 15
    for rule in rules:
        assert rule["why"] and rule["all"]
        assert all(isinstance(p, str) and p.strip() for p in rule["all"].values())
