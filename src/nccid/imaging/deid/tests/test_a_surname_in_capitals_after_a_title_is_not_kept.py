"""A surname in capitals after a title in mixed case ("Mrs J QUETZAL", "Dr QUETZAL"), the usual
NHS way of writing a name, is a person-name shape. A mixed-case title took only capitalised
words after it and a name in capitals only followed a title in capitals, so such a name in kept
text (coil and sequence names, Software Versions, Code Meaning) was stored and ``nccid deid
check`` said nothing, while "Mrs Jane Quetzal" was removed. Now after Mr, Mrs, Ms, Miss, Mx,
Dr, Prof, Sir or Dame (a dot or not) a word in capitals, alone or after initials or words,
is a name. A mixed-case title cannot be a modality code (MR, DR and MRS are in capitals), so the
rules of titles in capitals stay; Rev in mixed case is also a revision ("Rev AB"), so it keeps
the capitals rule of two or three words."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.identifying import looks_identifying, text_findings
from nccid.synthetic.dicom import synthetic_instance, to_bytes

PSEUDONYM = "NCCID-AAAAAAAAAAAAAAAA"
NAMES = ["Mrs J QUETZAL", "Mrs QUETZAL", "Dr QUETZAL", "seen by Dr J. QUETZAL",
         "Referred by Dr JONES", "Mr O'QUETZAL", "Ms QUETZAL-SMITH", "Miss A B QUETZAL",
         "Mx J.QUETZAL", "Prof. QUETZAL", "Sir J QUETZAL", "Dame JANE QUETZAL", "Dr NG",
         "Rev J QUETZAL", "Dr Jane QUETZAL"]
NOT_NAMES = [  # kept values a mixed-case title before capitals could take for a name
    "Rev AB", "Rev AA", "Rev. BC", "Rev A", "Dr A", "Dr J.", "MR BRAIN", "DR CHEST", "MRS PRESS",
    "MRS SVS TE30", "MX SCREENING", "REV BUILD", "syngo MR XA20 Rev. 2", "Rev 3.1 SP2",
    "Mrs", "Dr_CHEST_PA", "HDr CT", "SENSE-Head-8", "Body 18",
]
KEPT_TEXT = ["SequenceName", "ReceiveCoilName", "TransmitCoilName", "SegmentLabel", "LUTLabel"]


@pytest.mark.parametrize("name", NAMES)
def test_a_surname_in_capitals_after_a_title_is_a_person_name_shape(name):
    reasons = [reason for reason, _ in text_findings(name, "LO")]
    assert any("title and a name" in reason for reason in reasons)
    assert looks_identifying(name)


@pytest.mark.parametrize("value", NOT_NAMES)
def test_values_that_are_no_name_are_not(value):
    assert list(text_findings(value, "LO")) == []


def _planted(person, name: str) -> Dataset:
    ds = synthetic_instance(person, modality="MR", plant=False)
    for keyword in KEPT_TEXT:
        setattr(ds, keyword, name)
    ds.SoftwareVersions = ["VE11C", name]  # the other value is kept
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-A0100", "SRT", name
    ds.AnatomicRegionSequence = [item]
    return ds


@pytest.mark.parametrize("name", ["Mrs J QUETZAL", "seen by Dr J. QUETZAL"])
@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_it_is_dropped_at_intake_and_reported_by_the_checker(kr, person, by_both_paths, name,
                                                             profile):
    ds = _planted(person, name)
    found = Checker(profile=profile).check_dataset(ds, "x")
    flagged = {f.keyword for f in found if "title and a name" in f.reason}
    assert flagged == {*KEPT_TEXT, "SoftwareVersions", "CodeMeaning"}
    stored = by_both_paths(Deidentifier(kr, profile), to_bytes(ds), PSEUDONYM)
    assert b"QUETZAL" not in stored
    out = dcmread(BytesIO(stored))
    assert out.SoftwareVersions == "VE11C"
    assert (out.ReceiveCoilName, out.SequenceName) == ("REMOVED", "")
    assert Checker(profile=profile).check_dataset(out, "x") == []


@pytest.mark.parametrize("value", NOT_NAMES)
def test_values_that_are_no_name_are_kept_at_intake(deid, person, value):
    ds = synthetic_instance(person, modality="MR", plant=False)
    ds.SequenceName = ds.ReceiveCoilName = value
    out = deid.deidentify(ds, pseudonym=PSEUDONYM).dataset
    assert (out.SequenceName, out.ReceiveCoilName) == (value, value)
