"""Body Part Examined is compared with its defined terms without spaces, as
docs/deidentification.md says: ``WHOLE BODY`` (as equipment writes it) is the term
``WHOLEBODY`` and is kept as that term, at any depth, by both intake paths; it was emptied.
A value that is no term without its spaces is still emptied."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.check import Checker
from nccid.synthetic.dicom import synthetic_instance, to_bytes

from .test_kept_values_of_fixed_form import _plant, _planted


@pytest.mark.parametrize(("written", "kept"), [
    ("WHOLE BODY", "WHOLEBODY"),
    ("CHEST ABD PELVIS", "CHESTABDPELVIS"),
    ("whole body", "wholebody"),        # a term in any case, kept in its case
    ("CHEST", "CHEST"),
    ("CHEST SMITH", ""),                # CHESTSMITH is no term
    ("SMITH", ""),
])
@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_a_body_part_is_kept_as_its_term_without_spaces(kr, person, by_both_paths, profile,
                                                         written, kept):
    engine = Deidentifier(kr, profile)
    data = to_bytes(_planted(person, "BodyPartExamined", written))  # top level and nested
    out = dcmread(BytesIO(by_both_paths(engine, data)))
    for where in (out, out.ViewCodeSequence[0]):
        assert (where.BodyPartExamined or "") == kept
    _, result = engine.deidentify_bytes(data, pseudonym="NCCID-A")
    assert bool(result.off_list) is not bool(kept)


def test_the_checker_takes_a_term_written_with_spaces(person):
    ds = synthetic_instance(person, plant=False)
    _plant(ds, "BodyPartExamined", "WHOLE BODY")
    assert not [f for f in Checker().check_dataset(ds) if f.keyword == "BodyPartExamined"]
