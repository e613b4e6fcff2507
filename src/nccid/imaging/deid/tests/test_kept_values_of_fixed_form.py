"""Kept elements whose VR has a fixed form (an age, a code, a number as text) keep only a value
of that form, and one of the attribute's enumerated values where PS3.3 lists them, or of its
defined terms where ``defined_terms.json`` lists them (Body Part Examined): a surname in
Patient's Age or Body Part Examined, or a hospital number in Patient's Sex, is emptied, like a
date with more in it than a date."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes

CASES = [  # (keyword, value, kept)
    ("PatientAge", "045Y", True),
    ("PatientAge", "Testperson 9990000018", False),
    ("PatientAge", "45", False),
    ("PatientAge", "045y", True),               # case hides nothing
    ("PatientSex", "F", True),
    ("PatientSex", "o", True),                 # case hides nothing
    ("PatientSex", "RX42000000", False),       # a code string, but not M, F or O
    ("SmokingStatus", "SMITH", False),
    ("BodyPartExamined", "CHEST", True),
    ("BodyPartExamined", "chest", True),         # a defined term in any case
    ("BodyPartExamined", "Thorax", True),
    ("BodyPartExamined", "CHESTABDPELVIS", True),
    ("BodyPartExamined", "Smith, John", False),  # a comma is not in a code string
    ("BodyPartExamined", "SMITH", False),        # a code string, but not a defined term
    ("BodyPartExamined", "Testperson", False),
    ("BodyPartExamined", "CHEST SMITH", False),
    ("BodyPartExamined", "THORAX-ABDOMEN", False),  # an equipment's own code: not a term
    ("BodyPartExamined", "CHESTABDOMENPELVIS", False),
    ("ScanOptions", "CARDIAC GATING/ECG", True),
    ("AcquisitionNumber", "12", True),
    ("AcquisitionNumber", "9990000018", False),  # an IS is a 32-bit integer
    ("PatientWeight", "70.5", True),
    ("PatientWeight", "9994200003", False),      # an NHS number, kept as a decimal
    ("BodyPartExamined", "9994200003", False),   # and as a code
    ("PatientWeight", "9994200004", True),       # 10 digits failing the check digit
    ("PatientWeight", "70 Smith", False),
    ("SliceThickness", "1e400", False),          # no float holds it: Infinity in the JSON
    ("SliceThickness", "-1e400", False),
    ("SliceThickness", "NaN", False),
    ("SliceThickness", "1e300", True),           # large, but a number
]


def _plant(ds: Dataset, keyword: str, value: str) -> None:
    """``value`` as a file hands it over (pydicom will not build a number that is not one)."""
    tag = Tag(tag_for_keyword(keyword))
    raw = value.encode() + b" " * (len(value) % 2)
    ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)


def _planted(person, keyword: str, value: str) -> Dataset:
    ds = synthetic_instance(person, plant=False)
    _plant(ds, keyword, value)
    item = Dataset()  # the same at any depth: in an item of a kept sequence
    _plant(item, keyword, value)
    ds.ViewCodeSequence = [item]
    return ds


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
@pytest.mark.parametrize(("keyword", "value", "kept"), CASES)
def test_a_kept_value_not_of_its_form_is_emptied(kr, person, profile, keyword, value, kept):
    engine = Deidentifier(kr, profile)
    ds = _planted(person, keyword, value)
    data, _ = engine.deidentify_bytes(to_bytes(ds), pseudonym="NCCID-A")  # as read from a file
    from_bytes = dcmread(BytesIO(data))
    in_memory = engine.deidentify(_planted(person, keyword, value), pseudonym="NCCID-A").dataset
    for out in (from_bytes, in_memory):
        for where in (out, out.ViewCodeSequence[0]):
            assert keyword in where
            kept_value = where[keyword].value
            assert str(kept_value) == value if kept else kept_value in ("", None)


@pytest.mark.parametrize(("keyword", "value", "kept"), CASES)
def test_the_checker_reports_what_the_engine_empties(person, keyword, value, kept):
    ds = synthetic_instance(person, plant=False)
    _plant(ds, keyword, value)
    where = [f for f in Checker().check_dataset(ds) if f.keyword == keyword]
    assert bool(where) is not kept
    assert all(value not in f.masked for f in where)


def _both_paths(engine: Deidentifier, data: bytes) -> Dataset:
    """The engine's file, checked byte for byte against the element-by-element path's (the
    intake's), twice (the second time from its memo)."""
    out, _ = engine.deidentify_bytes(data, pseudonym="NCCID-A")
    for _ in range(2):
        made = deidentify_by_element(engine, data, parse_header(data), "NCCID-A")
        assert made is not None and b"".join(made[0]) == out
    return dcmread(BytesIO(out))


def _declared(ds: Dataset, tag: int, vr: str, value: str) -> None:
    raw = value.encode() + b" " * (len(value) % 2)
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_only_the_values_not_of_their_form_are_dropped_from_a_multi_valued_element(
        kr, person, profile):
    ds = synthetic_instance(person, plant=False)
    _plant(ds, "ImageType", "ORIGINAL\\PRIMARY\\Smith, J\\ABDOM/RAD")  # an Aloka-like type
    _plant(ds, "PixelSpacing", "0.5\\0.5 Smith")
    _plant(ds, "WindowCenter", "40\\Smith, John")
    _plant(ds, "PatientSex", "F\\X")  # one enumerated value, one not
    _plant(ds, "ScanOptions", "Smith, John\\Smith, J")  # none left: emptied
    item = Dataset()
    _plant(item, "ImageType", "DERIVED\\Smith, J")
    ds.ViewCodeSequence = [item]
    out = _both_paths(Deidentifier(kr, profile), to_bytes(ds))
    assert list(out.ImageType) == ["ORIGINAL", "PRIMARY", "ABDOM/RAD"]
    assert str(out.PixelSpacing) == "0.5"
    assert str(out.WindowCenter) == "40"
    assert out.PatientSex == "F"
    assert out.ScanOptions in ("", None)
    assert out.ViewCodeSequence[0].ImageType == "DERIVED"


def test_the_checker_reports_only_the_values_dropped(person):
    ds = synthetic_instance(person, plant=False)
    _plant(ds, "ImageType", "ORIGINAL\\PRIMARY\\Smith, J\\0001")
    found = [f for f in Checker().check_dataset(ds) if f.keyword == "ImageType"]
    assert len(found) == 1 and "drops" in found[0].reason


DS_AS_IS = [  # (tag, declared VR, value): a number declared as the other kind of number
    (0x00180050, "IS", "2.5"),       # Slice Thickness (DS) as IS
    (0x00280030, "IS", "0.5\\0.5"),  # Pixel Spacing (DS) as IS
    (0x00200013, "DS", "2.5"),       # Instance Number (IS) as DS
    (0x00180050, "IS", "9990000019.5"),  # a DS is not limited to 32 bits (no NHS number in it)
]


@pytest.mark.parametrize(("tag", "vr", "value"), DS_AS_IS)
def test_a_number_declared_as_the_other_kind_of_number_keeps_a_value_of_either_form(
        kr, person, tag, vr, value):
    ds = synthetic_instance(person, plant=False)
    _declared(ds, tag, vr, value)
    _declared(ds, 0x00181150, "DS", "Smith")  # Exposure Time (IS) as DS: neither form
    out = _both_paths(Deidentifier(kr), to_bytes(ds))
    kept = out.get_item(tag)  # as written, unconverted
    assert (kept.VR, kept.value) == (vr, (value + " " * (len(value) % 2)).encode())
    assert out.get_item(0x00181150).value in (b"", None)
    assert not [f for f in Checker().check_dataset(dcmread(BytesIO(to_bytes(ds))))
                if f.tag == f"({tag >> 16:04X},{tag & 0xFFFF:04X})" and "form" in f.reason]


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_values_off_their_list_are_counted_alike_by_both_paths_never_quoted(kr, person, profile):
    engine = Deidentifier(kr, profile)
    ds = _planted(person, "BodyPartExamined", person.family_name)  # top level and nested
    _plant(ds, "PatientSex", "F\\X")                 # one enumerated value of two
    _plant(ds, "ImageType", "ORIGINAL\\Smith, J")   # off its form, but ImageType has no list
    data = to_bytes(ds)
    expected = {Tag("BodyPartExamined"): 1, Tag("ViewCodeSequence"): 1, Tag("PatientSex"): 1}
    _, result = engine.deidentify_bytes(data, pseudonym="NCCID-A")
    assert result.off_list == expected and result.values_off_list == 3
    for _ in range(2):  # the first time, then from the memo
        made = deidentify_by_element(engine, data, parse_header(data), "NCCID-A")
        assert made is not None and made[1].off_list == expected
    assert person.family_name not in repr(result) + repr(made[1])


def test_the_checker_names_a_body_part_that_is_no_defined_term(person):
    ds = synthetic_instance(person, plant=False)
    _plant(ds, "BodyPartExamined", "SMITH")
    found = [f for f in Checker().check_dataset(ds) if f.keyword == "BodyPartExamined"]
    assert [f.reason for f in found] == [
        "not one of the attribute's enumerated values or defined terms (de-identification drops it)"]
    assert "SMITH" not in found[0].masked


def test_the_defined_terms_are_the_standards_code_strings_with_their_source():
    from nccid.imaging.deid.engine import defined_terms

    entry = defined_terms()["BodyPartExamined"]
    terms = entry["terms"]
    assert entry["tag"] == "(0018,0015)" and "PS3.16 Annex L" in entry["source"]
    assert "66953160ac74c973834175c7ca6d0b17917af4c4" in entry["source"]  # the transcription
    assert terms == sorted(set(terms)) and len(terms) > 300
    assert all(t.isascii() and t.isalnum() and t.isupper() or t[0].isdigit() for t in terms)
    assert all(len(t) <= 16 for t in terms)  # the standard's CS length
    assert {"CHEST", "THORAX", "LUNG", "HEAD", "ABDOMEN", "WHOLEBODY", "CHESTABDPELVIS"} <= set(terms)
