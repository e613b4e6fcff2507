"""A kept free-text value that ``nccid deid check`` would flag is not kept. The safe keywords
of 61761d6 (Segment Label, Sequence Name, coil and algorithm names, LUT Label, detector maker
and model...) kept "Smithson^Janet 9990000018" word for word, into the stored file and its
header JSON, by both paths and both profiles, and the checker then flagged it. Now every kept
LO/SH/ST/LT/UT/UC value that is no code is tested as the checker tests free text, once per
distinct value: one that fails is dropped (an attribute that is Type 1 somewhere gets the
dummy REMOVED when nothing is left), counted by tag, alike by the engine, element by element
and in the recheck of waiting and held images."""

from __future__ import annotations

import json
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.engine import parse_header
from nccid.imaging.deid.identifying import looks_identifying
from nccid.synthetic.dicom import synthetic_instance, to_bytes

PLANTED = "Smithson^Janet 9990000018"  # synthetic: a 999-range NHS number
PSEUDONYM = "NCCID-AAAAAAAAAAAAAAAA"
TODAYS = ["StackID", "FrameLabel", "DimensionDescriptionLabel", "PulseSequenceName",
          "SequenceName", "ReceiveCoilName", "TransmitCoilName", "MultiCoilElementName",
          "ReceiveCoilManufacturerName", "TransmitCoilManufacturerName", "SegmentLabel",
          "SegmentAlgorithmName", "AlgorithmName", "LUTLabel", "DetectorManufacturerName",
          "DetectorManufacturerModelName"]
TYPE_1 = {"StackID", "PulseSequenceName", "ReceiveCoilName", "TransmitCoilName",
          "MultiCoilElementName", "SegmentLabel", "SegmentAlgorithmName", "AlgorithmName",
          "LUTLabel"}


def _planted(person) -> Dataset:
    ds = synthetic_instance(person, modality="MR", plant=False)
    item = Dataset()
    for keyword in TODAYS:
        setattr(ds, keyword, PLANTED)
        setattr(item, keyword, PLANTED)
    ds.SharedFunctionalGroupsSequence = [item]  # kept, items walked
    ds.SoftwareVersions = ["VE11C", "Smithson^Janet"]  # the other value is kept
    ds.SequenceVariant = "SK"  # a code: untouched
    return ds


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_engine_and_element_by_element_keep_no_planted_name(kr, person, profile):
    deid = Deidentifier(kr, profile=profile)
    data = to_bytes(_planted(person))
    parts, result = deid.deidentify_parts(data, pseudonym=PSEUDONYM, header=parse_header(data))
    made = deidentify_by_element(deid, data, parse_header(data), PSEUDONYM)
    assert made is not None and b"".join(made[0]) == b"".join(parts)
    assert made[1].off_list == result.off_list
    stored = b"".join(parts)
    assert b"Smithson" not in stored and b"9990000018" not in stored
    assert b"Smithson" not in made[3] and b"9990000018" not in made[3]
    ds = dcmread(BytesIO(stored))
    for keyword in TODAYS:
        for where in (ds, ds.SharedFunctionalGroupsSequence[0]):
            assert where[keyword].value == ("REMOVED" if keyword in TYPE_1 else "")
    assert ds.SoftwareVersions == "VE11C"
    assert json.loads(made[3])["00181020"] == {"vr": "LO", "Value": ["VE11C"]}
    counted = result.off_list
    assert counted[tag_for_keyword("SegmentLabel")] == 1
    assert counted[tag_for_keyword("SoftwareVersions")] == 1
    assert counted[tag_for_keyword("SharedFunctionalGroupsSequence")] == len(TODAYS)
    assert Checker(profile=profile).check_dataset(ds, "x") == []


def test_each_distinct_value_is_tested_once(kr, person):
    deid = Deidentifier(kr, profile="retain-dates")
    looks_identifying.cache_clear()
    for sop in range(3):  # a series: the same values in every file
        ds = _planted(person)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{sop + 1}"
        deid.deidentify(ds, pseudonym=PSEUDONYM)
    assert looks_identifying.cache_info().misses < 40  # not 3 files x 33 planted values


def test_a_waiting_or_held_file_loses_it_when_linked_or_released(kr, person):
    """De-identified by a release that kept it: the recheck drops it too."""
    deid = Deidentifier(kr, profile="shift-dates")
    ds = synthetic_instance(person, modality="MR", plant=False)
    deid.deidentify(ds, pseudonym=None, placeholder_id="PENDING-1")
    ds.SegmentLabel = ds.SequenceName = PLANTED  # as an older release left them
    stored = to_bytes(ds)
    for out in (deid.recheck_bytes(stored), deid.assign_patient_bytes(stored, PSEUDONYM)):
        again = dcmread(BytesIO(out))
        assert again.SegmentLabel == "REMOVED" and again.SequenceName == ""
        assert b"Smithson" not in out


def test_text_that_looks_like_nothing_is_kept(kr, person):
    deid = Deidentifier(kr, profile="shift-dates")
    ds = synthetic_instance(person, modality="MR", plant=False)
    ds.SegmentLabel, ds.SequenceName, ds.ReceiveCoilName = "Left lung", "*tfl3d1_16ns", "Body"
    deid.deidentify(ds, pseudonym=PSEUDONYM)
    assert (ds.SegmentLabel, ds.SequenceName, ds.ReceiveCoilName) == (
        "Left lung", "*tfl3d1_16ns", "Body")
