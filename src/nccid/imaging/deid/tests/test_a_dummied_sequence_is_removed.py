"""Action D on a sequence removes it: the table's D is a non-zero-length dummy value, which
for a sequence would be an invented item (an SR content item, an annotation) a researcher
could take for data; the empty sequence written before was neither D nor conformant where the
sequence is Type 1 (an SR's Content Sequence, a presentation state's Graphic Annotation
Sequence). The same at any depth and by both paths."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.synthetic.dicom import synthetic_instance, to_bytes

DUMMIED = ("ContentSequence", "GraphicAnnotationSequence", "OperatorIdentificationSequence",
           "VerifyingObserverSequence")


def _with_dummied_sequences(person) -> Dataset:
    ds = synthetic_instance(person, plant=False)
    for keyword in DUMMIED:
        item = Dataset()
        item.TextValue = "Seen by Dr Testperson"
        item.CodeMeaning = "Testperson"
        setattr(ds, keyword, [item])
    holder = Dataset()  # nested: in an item of a kept sequence
    holder.ContentSequence = [Dataset()]
    holder.ContentSequence[0].TextValue = "Testperson"
    ds.ReferencedImageSequence = [holder]
    return ds


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_a_dummied_sequence_is_removed_at_any_depth_by_both_paths(kr, person, profile,
                                                                  by_both_paths):
    engine = Deidentifier(kr, profile)
    data = to_bytes(_with_dummied_sequences(person))
    out = by_both_paths(engine, data)
    written = dcmread(BytesIO(out))
    for keyword in DUMMIED:
        assert keyword not in written
    assert "ReferencedImageSequence" in written
    assert "ContentSequence" not in written.ReferencedImageSequence[0]
    assert b"Testperson" not in out
