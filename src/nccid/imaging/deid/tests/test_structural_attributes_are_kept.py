"""Attributes the keyword rule would remove (their keyword holds ID, Name or Label) but whose
values are structure, codes or equipment are kept (``rules.json`` ``safe_keywords``, a reason
per group): an enhanced multi-frame's Stack ID, which its Dimension Index Pointer names and
every frame's Frame Content holds; an MR's sequence and coil names; a segmentation's Segment
Label (Type 1). Never one Table E.1-1 lists, and names and free text still go."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.profile import compile_profile, load_data, parse_tag, safe_keywords
from nccid.synthetic.dicom import synthetic_instance, to_bytes

KEPT = {"PulseSequenceName": "tfl3d1", "SequenceName": "*tfl3d1_16ns", "ReceiveCoilName": "Body18",
        "TransmitCoilName": "Body", "MultiCoilElementName": "BO1",
        "ReceiveCoilManufacturerName": "SIEMENS", "DetectorManufacturerName": "TRIXELL"}
REMOVED = {"AcquisitionProtocolName": "t1 Testperson", "ASLTechniqueDescription": "Testperson",
           "DataSetName": "Testperson", "ContentDescription": "Testperson"}


def _enhanced(person) -> Dataset:
    ds = synthetic_instance(person, modality="MR", plant=False)
    for keyword, value in {**KEPT, **REMOVED}.items():
        setattr(ds, keyword, value)
    frames = []
    for number in (1, 2):
        content = Dataset()
        content.StackID, content.InStackPositionNumber = "1", number
        content.FrameLabel = f"slice {number}"
        content.DimensionIndexValues = [1, number]
        group = Dataset()
        group.FrameContentSequence = [content]
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = frames
    dimensions = []
    for keyword in ("StackID", "InStackPositionNumber"):
        dimension = Dataset()
        dimension.DimensionIndexPointer = tag_for_keyword(keyword)
        dimension.FunctionalGroupPointer = tag_for_keyword("FrameContentSequence")
        dimension.DimensionDescriptionLabel = keyword
        dimensions.append(dimension)
    ds.DimensionIndexSequence = dimensions
    segment = Dataset()
    segment.SegmentNumber, segment.SegmentLabel, segment.SegmentAlgorithmType = 1, "Lung", "MANUAL"
    ds.SegmentSequence = [segment]
    return ds


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_structural_attributes_are_kept_by_both_paths(kr, person, profile, by_both_paths):
    engine = Deidentifier(kr, profile)
    data = to_bytes(_enhanced(person))
    out = by_both_paths(engine, data)
    written = dcmread(BytesIO(out))
    for keyword, value in KEPT.items():
        assert written[keyword].value == value
    for keyword in REMOVED:
        assert keyword not in written
    assert b"Testperson" not in out
    assert written.SegmentSequence[0].SegmentLabel == "Lung"
    for dimension in written.DimensionIndexSequence:  # no pointer left dangling
        assert dimension.DimensionDescriptionLabel
        for frame in written.PerFrameFunctionalGroupsSequence:
            assert dimension.DimensionIndexPointer in frame.FrameContentSequence[0]
    assert [f.FrameContentSequence[0].FrameLabel
            for f in written.PerFrameFunctionalGroupsSequence] == ["slice 1", "slice 2"]


def test_no_safe_keyword_is_a_table_row_a_name_or_free_text():
    """The table's rows win over the safe list anyway (compile_profile): one listed there
    would be a keyword kept by mistake in a later edition's compile."""
    rules = load_data("rules.json")
    table = load_data("profile_e1_1.json")["attributes"]
    rows = [parsed for parsed in (parse_tag(row["tag"]) for row in table) if parsed]
    for keyword in safe_keywords(rules):
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        group, element = tag >> 16, tag & 0xFFFF
        assert not any(group & gmask == g and element & emask == e
                       for g, gmask, e, emask in rows), f"{keyword} is a Table E.1-1 row"
        assert dictionary_VR(tag) != "PN", keyword  # no person name (codes may be ST or UR)
        for name in ("retain-dates", "shift-dates") if group != 0x0002 else ():  # meta: rebuilt
            assert compile_profile(name).action(tag) == "K", keyword
