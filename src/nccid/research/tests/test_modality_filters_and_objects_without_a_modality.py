"""A modality filter takes the images of the codes and folders it names, and only those: an
image without a Modality (folder ``other``) is in ``--modality other``, not in ``xray`` or
``mri`` (an empty placeholder for the codes once matched every empty Modality)."""

from __future__ import annotations

import pytest

from nccid.research.cohort import CohortFilter, select_cohort

from .world import add_unusual_objects, build_world


@pytest.fixture(scope="module")
def unusual_world(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("unusual-world"), n_people=4)
    world.keys = add_unusual_objects(world)
    return world


def _keys(world, researcher, *modality: str) -> set[str]:
    cohort = select_cohort(researcher, CohortFilter.from_dict({"modality": list(modality)}),
                           world.source())
    return set(cohort.images()["storage_key"])


def _expected(world, folders: set[str]) -> set[str]:
    return {i["storage_key"] for i in world.images
            if i["set_name"] == "training" and i["folder"] in folders}


@pytest.mark.parametrize("modality", [("xray",), ("mri",), ("xray", "mri")])
def test_a_folder_filter_leaves_out_images_without_a_modality(unusual_world, researcher, modality):
    assert _keys(unusual_world, researcher, *modality) == _expected(unusual_world, set(modality))
    assert unusual_world.keys["other"] not in _keys(unusual_world, researcher, *modality)


def test_a_code_filter_leaves_out_images_without_a_modality(unusual_world, researcher):
    assert _keys(unusual_world, researcher, "CT") == _expected(unusual_world, {"ct"})
    assert _keys(unusual_world, researcher, "SR") == {unusual_world.keys["sr"]}


def test_the_other_folder_finds_the_images_without_a_modality(unusual_world, researcher):
    assert _keys(unusual_world, researcher, "other") == {unusual_world.keys["other"]}
    assert _keys(unusual_world, researcher, "OTHER", "dx") == (
        {unusual_world.keys["other"]} | {i["storage_key"] for i in unusual_world.images
                                         if i["set_name"] == "training" and i["modality"] == "DX"})


def test_the_torch_dataset_leaves_out_objects_without_pixels(unusual_world, researcher):
    # An SR (no Pixel Data) in the set stopped every DataLoader over it at its item.
    import nccid.research

    data = nccid.research.open(researcher, source=unusual_world.source())
    listed = set(data.images()["storage_key"])
    assert unusual_world.keys["sr"] in listed  # still listed (and exported) ...
    ds = data.torch_dataset(window="none", drop_unlabelled=False)
    keys = [key for key, _ in ds.items]
    assert unusual_world.keys["sr"] not in keys  # ... but no dataset item
    assert set(keys) == listed - {unusual_world.keys["sr"]}
    for index in range(len(ds)):
        image, _ = ds[index]
        assert image.ndim == 3
