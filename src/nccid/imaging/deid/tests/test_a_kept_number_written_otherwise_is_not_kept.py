"""A kept number holding an NHS/CHI number written with a sign, a decimal part, an exponent or
leading zeros was kept at intake (only a bare run of 9-10 digits was dropped) while
`nccid deid check` flagged it: intake now drops what the checker would flag."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread

from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.check import Checker
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

NUMBER = "9990000018"  # a valid check digit (a 999 test number: intake tests the shape, not the range)


@pytest.mark.parametrize("written", ["+9990000018", "9990000018.0", "9.990000018E9", "09990000018",
                                     NUMBER])
def test_patient_weight_holding_a_patient_number_is_dropped(written):
    ds = synthetic_instance(people(1, seed=5)[0], plant=False)
    ds.PatientWeight = written
    stored, _ = Deidentifier(Keyring(bytes(range(32)))).deidentify_bytes(
        to_bytes(ds), pseudonym="NCCID-AAAAAAAAAAAAAAAA")
    assert b"9990000018" not in stored and b"9.990000018" not in stored
    out = dcmread(BytesIO(stored))
    assert "PatientWeight" not in out or out.PatientWeight in ("", None)
    assert not [f for f in Checker().check_dataset(out, "x") if f.tag == "(0010,1030)"]


def test_an_ordinary_weight_is_kept():
    ds = synthetic_instance(people(1, seed=5)[0], plant=False)
    ds.PatientWeight = "72.5"
    stored, _ = Deidentifier(Keyring(bytes(range(32)))).deidentify_bytes(
        to_bytes(ds), pseudonym="NCCID-AAAAAAAAAAAAAAAA")
    assert float(dcmread(BytesIO(stored)).PatientWeight) == 72.5
