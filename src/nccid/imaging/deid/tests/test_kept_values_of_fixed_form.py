"""Kept elements whose VR has a fixed form (an age, a code, a number as text) keep only a value
of that form, and one of the attribute's enumerated values where PS3.3 lists them: a
surname in Patient's Age or a hospital number in Patient's Sex is emptied, like a date with
more in it than a date."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.check import Checker
from nccid.synthetic.dicom import synthetic_instance, to_bytes

CASES = [  # (keyword, value, kept)
    ("PatientAge", "045Y", True),
    ("PatientAge", "Testperson 9990000018", False),
    ("PatientAge", "45", False),
    ("PatientSex", "F", True),
    ("PatientSex", "o", True),                 # case hides nothing
    ("PatientSex", "RX42000000", False),       # a code string, but not M, F or O
    ("SmokingStatus", "SMITH", False),
    ("BodyPartExamined", "CHEST", True),
    ("BodyPartExamined", "Smith, John", False),  # punctuation is not in a code string
    ("AcquisitionNumber", "12", True),
    ("AcquisitionNumber", "9990000018", False),  # an IS is a 32-bit integer
    ("PatientWeight", "70.5", True),
    ("PatientWeight", "70 Smith", False),
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
