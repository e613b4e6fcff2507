"""GDCM, the only decoder here for JPEG Lossless and JPEG-LS, aborts its process (SIGABRT, no
Python exception) on some malformed streams, and a site chooses what it sends. It runs in a
child process: such an image is a clear error in the dataset and an audited failure of a
teaching export, and the next image decodes (a new child)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

import nccid.research
from nccid.accounts.models import AuditEvent
from nccid.research.decoding import PixelDecodeError, decode_pixels
from nccid.research.teaching import TeachingError, add_case, export_collection
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

from .hostile_pixels import ABORTING, VALID, with_pixels_of
from .world import build_world


def _instance(sample: str, broken: bool = True) -> pydicom.Dataset:
    person = people(1, seed=11)[0]
    return with_pixels_of(synthetic_instance(person, patient_id=person.nhs_number), sample, broken)


@pytest.mark.parametrize("sample", sorted(ABORTING))
def test_an_aborting_stream_is_an_error_and_the_next_image_decodes(sample):
    with pytest.raises(PixelDecodeError, match="compressed pixel data could not be decoded"):
        decode_pixels(_instance(sample))
    for valid in VALID:  # a new child decodes the valid ones, the same as before the abort
        pixels = decode_pixels(_instance(valid, broken=False))
        expected = pydicom.dcmread(pydicom.data.get_testdata_file(valid)).pixel_array
        assert np.array_equal(pixels, expected)


def test_uncompressed_and_pillow_images_are_decoded_in_this_process(monkeypatch):
    from nccid.research import decoding

    monkeypatch.setattr(decoding, "_start", lambda: pytest.fail("started a decoding child"))
    person = people(1, seed=12)[0]
    assert decode_pixels(synthetic_instance(person)).ndim == 2
    jpeg = pydicom.dcmread(pydicom.data.get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert decode_pixels(jpeg).shape == (100, 100, 3)


@pytest.fixture
def planted(tmp_path):
    """A small warehouse where a training study's first image (its thumbnail) aborts GDCM."""
    small = build_world(tmp_path / "w", n_people=2)
    training = [i for i in small.images if i["set_name"] == "training"]
    victim = min((i for i in training if i["study_uid"] == training[0]["study_uid"]),
                 key=lambda i: (i["series_uid"], i["sop_uid"]))
    path = small.warehouse.root / victim["storage_key"]
    ds = with_pixels_of(pydicom.dcmread(path), "JPEG-LL.dcm")
    path.write_bytes(to_bytes(ds))
    return small, victim


def test_the_dataset_says_the_image_cannot_be_decoded_and_serves_the_others(planted, researcher):
    small, victim = planted
    dataset = nccid.research.open(researcher, source=small.source()).torch_dataset(
        drop_unlabelled=False)
    keys = [key for key, _ in dataset.items]
    bad = keys.index(victim["storage_key"])
    with pytest.raises(PixelDecodeError, match="could not be decoded"):
        dataset[bad]
    image, _ = dataset[(bad + 1) % len(keys)]
    assert image.dtype == np.float32


def test_a_dataloader_worker_reports_the_image_it_cannot_decode(planted, researcher):
    from torch.utils.data import DataLoader

    small, victim = planted
    dataset = nccid.research.open(researcher, source=small.source()).torch_dataset(
        drop_unlabelled=False)
    bad = [key for key, _ in dataset.items].index(victim["storage_key"])
    dataset.items = [dataset.items[bad]]
    with pytest.raises(PixelDecodeError, match="could not be decoded"):
        next(iter(DataLoader(dataset, batch_size=1, num_workers=1)))


def test_a_teaching_export_of_it_fails_audited_and_leaves_nothing(planted, data_manager, tmp_path):
    small, victim = planted
    add_case(data_manager, "Planted", victim["pseudonym"], victim["study_uid"],
             source=small.source())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TeachingError, match="could not be decoded") as failed:
        export_collection(data_manager, "Planted", out / "teach", small.source())
    assert victim["storage_key"] in str(failed.value)
    assert list(out.iterdir()) == []  # neither the destination nor a staging folder
    event = AuditEvent.objects.get(action="research.teaching.export.failed")
    assert event.detail == {"collection": "Planted", "error": str(failed.value)}
    assert not AuditEvent.objects.filter(action="research.teaching.export").exists()
