"""The catalogue's pixel spacing of an enhanced multi-frame image is its functional groups'
Pixel Measures (shared by all frames, or else the first frame's): it has no top-level Pixel
Spacing, and the column was empty. Pixel Spacing wins over Imager Pixel Spacing (projection
radiography's spacing at the detector), taken only failing all of these. Both intake paths
(the engine's and the element-by-element one, then from its memo) say the same."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.engine import parse_header
from nccid.imaging.deid.meta import image_meta
from nccid.synthetic.dicom import synthetic_instance, to_bytes


def _measures(spacing: str) -> Dataset:
    measures, group = Dataset(), Dataset()
    measures.PixelSpacing = spacing.split("\\")
    measures.SliceThickness = "1.5"
    group.PixelMeasuresSequence = [measures]
    return group


def _frames(*spacings: str | None) -> list[Dataset]:
    return [_measures(s) if s else Dataset() for s in spacings]


def _enhanced(person, shared: str | None, first: str | None, second: str | None) -> Dataset:
    ds = synthetic_instance(person, modality="MR", plant=False)
    del ds.PixelSpacing
    ds.SharedFunctionalGroupsSequence = _frames(shared)
    ds.PerFrameFunctionalGroupsSequence = _frames(first, second)
    return ds


def _spacings(engine: Deidentifier, ds: Dataset) -> set[str]:
    """The catalogue's pixel spacing by the engine's path and by the element-by-element one
    (twice: the second time from its memo)."""
    data = to_bytes(ds)
    found = {image_meta(engine.deidentify(ds, pseudonym="NCCID-A").dataset).pixel_spacing}
    for _ in range(2):
        made = deidentify_by_element(engine, data, parse_header(data), "NCCID-A")
        assert made is not None
        found.add(made[2].pixel_spacing)
    return found


@pytest.mark.parametrize(("shared", "first", "second", "expected"), [
    ("0.7\\0.7", None, None, "0.7\\0.7"),            # shared by every frame
    (None, "0.8\\0.9", "0.6\\0.6", "0.8\\0.9"),        # per frame: the first frame's
    ("0.7\\0.7", "0.8\\0.8", None, "0.7\\0.7"),        # the shared groups first
    (None, None, None, ""),                          # none anywhere
])
def test_an_enhanced_images_spacing_is_read_from_its_functional_groups(
        kr, person, shared, first, second, expected):
    assert _spacings(Deidentifier(kr), _enhanced(person, shared, first, second)) == {expected}


def test_pixel_spacing_wins_over_imager_pixel_spacing_taken_only_failing_it(kr, person):
    engine = Deidentifier(kr)
    dx = synthetic_instance(person, modality="DX", plant=False)
    dx.pop("PixelSpacing", None)
    dx.ImagerPixelSpacing = ["0.139", "0.139"]
    assert _spacings(engine, dx) == {"0.139\\0.139"}
    dx.PixelSpacing = ["0.125", "0.125"]
    assert _spacings(engine, dx) == {"0.125\\0.125"}
