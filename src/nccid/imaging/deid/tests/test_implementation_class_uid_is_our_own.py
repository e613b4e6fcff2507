"""The Implementation Class UID the de-identification writes in the file meta is nccid's own:
a UUID-derived ``2.25`` UID (PS3.5 B.2), not a number invented under another organisation's
root (Medical Connections' 1.2.826.0.1.3680043, whose numbers are handed to others and could
collide). ``nccid deid check`` takes it as it takes every kept UID of the meta."""

from __future__ import annotations

import re
from io import BytesIO

from pydicom import dcmread

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.engine import IMPLEMENTATION_CLASS_UID, parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes

UUID_DERIVED = re.compile(r"2\.25\.(0|[1-9][0-9]*)")


def test_the_implementation_class_uid_is_uuid_derived():
    assert UUID_DERIVED.fullmatch(IMPLEMENTATION_CLASS_UID)
    assert int(IMPLEMENTATION_CLASS_UID[5:]) < 2**128 and len(IMPLEMENTATION_CLASS_UID) <= 64


def test_both_paths_write_it_and_the_checker_finds_nothing_in_the_meta(kr, person):
    engine = Deidentifier(kr)
    data = to_bytes(synthetic_instance(person, plant=False))
    out, _ = engine.deidentify_bytes(data, pseudonym="NCCID-A")
    made = deidentify_by_element(engine, data, parse_header(data), "NCCID-A")
    assert made is not None and b"".join(made[0]) == out
    written = dcmread(BytesIO(out))
    assert written.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert not [f for f in Checker().check_dataset(written) if f.tag.startswith("(0002,")]
