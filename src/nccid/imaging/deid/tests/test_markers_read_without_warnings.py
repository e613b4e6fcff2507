"""A researcher reading a stored file with pydicom's default validation gets no warning from
the markers the de-identification writes: every value of De-identification Method (LO) is at
most 64 characters, the padding of an odd total length included (a 64-character last value
padded to 65 warned on every read under shift-dates)."""

from __future__ import annotations

import warnings
from io import BytesIO

import pytest
from pydicom import config, dcmread

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.profile import profile_names
from nccid.synthetic.dicom import synthetic_instance, to_bytes


@pytest.mark.parametrize("profile", profile_names())
def test_a_stored_file_reads_without_warnings_under_every_profile(kr, person, profile, monkeypatch):
    out, _ = Deidentifier(kr, profile).deidentify_bytes(
        to_bytes(synthetic_instance(person, plant=False)), pseudonym="NCCID-AAAAAAAAAAAAAAAA")
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.WARN)  # pydicom's default
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = dcmread(BytesIO(out))
        method = ds.DeidentificationMethod
        _ = [element.value for element in ds.iterall()]
    raw = dcmread(BytesIO(out)).get_item(0x00120063).value  # as written, padding and all
    assert all(len(value) <= 64 for value in raw.split(b"\\"))
    assert method[0] == f"NCCID {profile}" and len(method) == 3
