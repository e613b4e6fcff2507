"""A safe-listed private value that is an NHS/CHI number is neither kept nor passed by the
checker. The safe list vouches for a vendor's parameter, so a patient's NHS number put in
SIEMENS MR HEADER B_value (IS) was kept word for word into the stored file and its header
JSON, and ``nccid deid check`` stepped over any safe-listed value of the right form: 0
findings. Now each value is tested as a public number is (its whole part however written, a
code's digits however spaced), once per distinct value."""

from __future__ import annotations

import json
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.check import PATIENT_NUMBER, Checker
from nccid.imaging.deid.identifying import number_looks_identifying
from nccid.imaging.deid.profile import SafePrivate, default_safe_private
from nccid.synthetic.dicom import synthetic_instance, to_bytes

SIEMENS = "SIEMENS MR HEADER"
ACME = SafePrivate("ACME DS", 0x0029, 0x10, "DS")  # an installation's own entry, a DS
SAFE = [*default_safe_private(), ACME]
NUMBER = "9990008000"  # synthetic: a 999-range NHS number
PSEUDONYM = "NCCID-AAAAAAAAAAAAAAAA"
HIDDEN = [  # (creator, group, element byte, VR, value)
    (SIEMENS, 0x0019, 0x0C, "IS", NUMBER),
    (SIEMENS, 0x0019, 0x0C, "IS", "+" + NUMBER),
    (SIEMENS, 0x0019, 0x0C, "IS", "00" + NUMBER),
    (SIEMENS, 0x0019, 0x0C, "IS", ["1000", NUMBER]),
    (SIEMENS, 0x0019, 0x0D, "CS", "999 000 8000"),
    (SIEMENS, 0x0019, 0x0E, "FD", [0.5, float(NUMBER), 0.0]),
    ("ACME DS", 0x0029, 0x10, "DS", NUMBER + ".0"),
    ("ACME DS", 0x0029, 0x10, "DS", "9.990008000E9"),
]
PARAMETERS = [  # what the list is for: kept
    (SIEMENS, 0x0019, 0x0C, "IS", ["1000", "0"]),
    (SIEMENS, 0x0019, 0x0D, "CS", "DIRECTIONAL"),
    (SIEMENS, 0x0019, 0x0E, "FD", [0.5, -0.5, 0.7071067811865476]),
    ("ACME DS", 0x0029, 0x10, "DS", "0.9990008000"),  # a fraction's digits are no number
]


def _with(person, creator: str, group: int, element: int, vr: str, value) -> Dataset:
    ds = synthetic_instance(person, modality="MR", plant=False)
    ds.private_block(group, creator, create=True).add_new(element, vr, value)
    return ds


def _tag(group: int, element: int) -> int:
    return group << 16 | 0x1000 | element


@pytest.mark.parametrize("case", HIDDEN, ids=[f"{c[3]}:{c[4]}" for c in HIDDEN])
def test_a_patient_number_is_not_kept_from_a_file_or_a_dataset(kr, person, case):
    deid = Deidentifier(kr, safe_private=SAFE)
    stored, _ = deid.deidentify_bytes(to_bytes(_with(person, *case)), pseudonym=PSEUDONYM)
    assert _tag(case[1], case[2]) not in dcmread(BytesIO(stored))
    assert b"9990008" not in stored and b"999 000 8000" not in stored
    out = deid.deidentify(_with(person, *case), pseudonym=PSEUDONYM).dataset
    assert _tag(case[1], case[2]) not in out


@pytest.mark.parametrize("case", PARAMETERS, ids=[c[3] for c in PARAMETERS])
def test_the_parameters_the_list_is_for_are_kept(kr, person, case):
    deid = Deidentifier(kr, safe_private=SAFE)
    stored, _ = deid.deidentify_bytes(to_bytes(_with(person, *case)), pseudonym=PSEUDONYM)
    assert _tag(case[1], case[2]) in dcmread(BytesIO(stored))
    assert Checker(SAFE).check_dataset(dcmread(BytesIO(stored)), "x") == []


@pytest.mark.parametrize("case", HIDDEN, ids=[f"{c[3]}:{c[4]}" for c in HIDDEN])
def test_the_checker_reports_it_in_a_file_and_in_a_header_json(person, case):
    ds = _with(person, *case)
    header = json.dumps(ds.to_json_dict()).encode()
    for findings in (Checker(SAFE).check_dataset(dcmread(BytesIO(to_bytes(ds))), "x"),
                     Checker(SAFE).check_header(header, "x.json")):
        private = [f for f in findings if f.keyword == "(private)"]
        assert [f.reason for f in private] == [PATIENT_NUMBER]
        assert f"({case[1]:04X},{_tag(case[1], case[2]) & 0xFFFF:04X})" == private[0].tag
        assert "9990008" not in private[0].masked


def test_each_distinct_value_is_tested_once(kr, person):
    deid = Deidentifier(kr, safe_private=SAFE)
    number_looks_identifying.cache_clear()
    misses = []
    for sop in range(3):  # a series: the same values in every file
        ds = _with(person, SIEMENS, 0x0019, 0x0C, "IS", ["1000", NUMBER])
        ds.private_block(0x0019, SIEMENS).add_new(0x0E, "FD", [0.5, -0.5, 0.0])
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{sop + 1}"
        deid.deidentify_bytes(to_bytes(ds), pseudonym=PSEUDONYM)
        misses.append(number_looks_identifying.cache_info().misses)
    # The first file's values are each tested (public numbers and codes too); the series' later
    # files, holding the same values, test none again.
    assert misses[0] >= 5 and misses[1] == misses[2] == misses[0]
    assert number_looks_identifying.cache_info().hits >= 2 * misses[0]
