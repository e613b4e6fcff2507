"""A name written in ordinary order after a title ("Mrs Jane Quetzal") is a person-name shape.
Only FAMILY^GIVEN was one, so such a name in kept text (Software Versions, coil and sequence
names, Code Meaning: 137 attributes of one file) was stored and ``nccid deid check`` said
nothing. Now a title (Mr, Mrs, Ms, Miss, Mx, Dr, Prof, Sir, Dame, Rev, a dot or not) before one
to three capitalised words or initials ending in a word is one; in capitals only the titles
that are no abbreviation (MRS, MISS, MX, PROF, SIR, DAME, REV; never MR, MS, DR), before two
or three words or initials in capitals. After a title in mixed case (not Rev, also a revision:
"Rev AB") a word in capitals is a name too, alone or after initials ("Mrs J QUETZAL", "Dr
QUETZAL": the NHS's usual way; a mixed-case title is no modality code). Kept values that are
no name stay kept."""

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
NAMES = ["Mrs Jane Quetzal", "Mr Quetzal", "Dr. J. Quetzal", "Prof A B Quetzal", "Ms Jane QUETZAL",
         "Miss O'Quetzal", "Mx McQuetzal", "Sir Siôn Quetzal-Smith", "Dame Zoë Quetzal",
         "Rev. J.Quetzal", "seen by Dr Quetzal", "MRS JANE QUETZAL", "MISS J QUETZAL",
         "PROF. A. QUETZAL", "MRS Jane Quetzal", "Mrs J QUETZAL", "Mrs QUETZAL", "Dr QUETZAL",
         "seen by Dr J. QUETZAL", "Referred by Dr JONES", "Mr O'QUETZAL", "Ms QUETZAL-SMITH",
         "Miss A B QUETZAL", "Mx J.QUETZAL", "Prof. QUETZAL", "Sir J QUETZAL", "Dame JANE QUETZAL",
         "Dr NG", "Rev J QUETZAL", "Dr Jane QUETZAL"]
NOT_NAMES = [  # kept values of these attributes that a title shape could take for a name
    "MR BRAIN", "MS PROTOCOL", "DR CHEST", "MR Brain", "DR Chest", "MRS PRESS", "MRS SVS TE30",
    "MX SCREENING", "REV BUILD", "REV A", "Rev B2", "Rev 3.1", "Dr A", "syngo MR E11",
    "syngo MR XA20 Rev. 2", "Mrs", "Head_Neck_64", "Body 18", "*tfl3d1_16ns", "SENSE-Head-8",
    "MR Spectroscopy", "Digital Radiography", "Ingenia Ambition X", "Miss rate", "DR_CHEST_PA",
    "Rev AB", "Rev AA", "Rev. BC", "Rev A", "Dr J.", "Rev 3.1 SP2", "Dr_CHEST_PA", "HDr CT",
]
KEPT_TEXT = ["SequenceName", "PulseSequenceName", "ReceiveCoilName", "TransmitCoilName",
             "ManufacturerModelName", "SegmentLabel", "ConvolutionKernel", "LUTLabel"]


@pytest.mark.parametrize("name", NAMES)
def test_a_name_after_a_title_is_a_person_name_shape(name):
    reasons = [reason for reason, _ in text_findings(name, "LO")]
    assert any("title and a name" in reason for reason in reasons)
    assert looks_identifying(name)


@pytest.mark.parametrize("value", NOT_NAMES)
def test_kept_values_that_are_no_name_are_not(value):
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


@pytest.mark.parametrize("name", ["Mrs Jane Quetzal", "MRS JANE QUETZAL", "Mrs J QUETZAL",
                                  "seen by Dr J. QUETZAL"])
@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_it_is_dropped_at_intake_and_reported_by_the_checker(kr, person, by_both_paths, name,
                                                             profile):
    ds = _planted(person, name)
    found = Checker(profile=profile).check_dataset(ds, "x")
    flagged = {f.keyword for f in found if "title and a name" in f.reason}
    assert flagged == {*KEPT_TEXT, "SoftwareVersions", "CodeMeaning"}
    stored = by_both_paths(Deidentifier(kr, profile), to_bytes(ds), PSEUDONYM)
    assert b"Quetzal" not in stored and b"QUETZAL" not in stored
    out = dcmread(BytesIO(stored))
    assert out.SoftwareVersions == "VE11C"
    assert Checker(profile=profile).check_dataset(out, "x") == []


@pytest.mark.parametrize("value", NOT_NAMES)
def test_values_that_are_no_name_are_kept_at_intake(deid, person, value):
    ds = synthetic_instance(person, modality="MR", plant=False)
    ds.SequenceName = ds.ReceiveCoilName = value
    out = deid.deidentify(ds, pseudonym=PSEUDONYM).dataset
    assert (out.SequenceName, out.ReceiveCoilName) == (value, value)
