"""nccid.research.open gives training-only frames and a dataset of windowed images with labels."""

from __future__ import annotations

import importlib.util
import io
import pickle

import numpy as np
import pydicom
import pytest

import nccid.research
from nccid.accounts.models import AuditEvent
from nccid.research.cohort import ScopeError
from nccid.research.dataset import pixels_to_array


def test_open_gives_training_frames_only(world, researcher):
    data = nccid.research.open(researcher, source=world.source(), covid_status="positive")
    clinical, images = data.clinical(), data.images(polars=True)
    training = world.pseudonyms("training")
    assert set(clinical["pseudonym"]) <= training and set(images["pseudonym"].to_list()) <= training
    assert set(images["set_name"].to_list()) == {"training"}
    assert len(images) == data.counts.images > 0
    assert set(clinical["final_covid_status"]) == {"Positive"}
    event = AuditEvent.objects.get(action="research.open")
    assert event.detail["filter"] == {"covid_status": ["positive"]}


def test_open_by_username_and_refusals(world, researcher, make_user, monkeypatch):
    assert nccid.research.open("rita", source=world.source()).counts.patients > 0
    monkeypatch.delenv("NCCID_USER", raising=False)
    with pytest.raises(ScopeError, match="say who is asking"):
        nccid.research.open(None, source=world.source())
    monkeypatch.setenv("NCCID_USER", make_user("uploader", username="ulla").username)
    with pytest.raises(ScopeError, match="only researchers"):
        nccid.research.open(source=world.source())


def test_dataset_items_are_float32_chw_with_clinical_labels(world, researcher):
    data = nccid.research.open(researcher, source=world.source())
    ds = data.torch_dataset(window="none", normalise="unit")
    assert len(ds) == data.counts.images
    status = {c["pseudonym"]: c["cleaned"]["final_covid_status"] for c in world.clinical}
    keys = [key for key, _ in ds.items]
    for index in range(len(ds)):
        image, label = ds[index]
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[0] == 1
        assert 0.0 <= image.min() and image.max() <= 1.0
        pseudonym = keys[index].split("/")[2]
        assert label == (1.0 if status[pseudonym] == "Positive" else 0.0)
    assert pickle.loads(pickle.dumps(ds)).items == ds.items  # DataLoader workers need this
    itu = data.torch_dataset(label="itu_admission")
    assert {label for _, label in itu.items} == {0.0, 1.0}


def test_ct_windowing_applies_rescale_and_window(world):
    ct = next(i for i in world.images if i["modality"] == "CT")
    ds = pydicom.dcmread(io.BytesIO(world.warehouse.read(ct["storage_key"])))
    raw = ds.pixel_array.astype(np.float64)
    hu = raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    want = np.clip((hu - (40 - 200)) / 400, 0, 1)
    np.testing.assert_allclose(pixels_to_array(ds, "auto")[0], want, atol=1e-5)
    wide = np.clip((hu - (500 - 1000)) / 2000, 0, 1)
    np.testing.assert_allclose(pixels_to_array(ds, (500, 2000))[0], wide, atol=1e-5)
    z = pixels_to_array(ds, "none", "zscore")[0]
    assert abs(float(z.mean())) < 1e-3 and abs(float(z.std()) - 1) < 1e-3


def test_monochrome1_is_inverted(world):
    image = next(i for i in world.images if i["set_name"] == "training")
    ds = pydicom.dcmread(io.BytesIO(world.warehouse.read(image["storage_key"])))
    ds.PhotometricInterpretation = "MONOCHROME2"
    normal = pixels_to_array(ds, "none")
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = pixels_to_array(ds, "none")
    np.testing.assert_allclose(inverted, 1.0 - normal, atol=1e-6)
    ds.WindowCenter, ds.WindowWidth = 30000, 20000
    windowed = pixels_to_array(ds, "dicom")
    ds.PhotometricInterpretation = "MONOCHROME2"
    np.testing.assert_allclose(windowed, 1.0 - pixels_to_array(ds, "dicom"), atol=1e-6)


def test_works_with_torch_dataloader_when_torch_is_installed(world, researcher):
    if importlib.util.find_spec("torch") is None:
        # Without torch (the optional extra) the dataset still serves numpy arrays.
        ds = nccid.research.open(researcher, source=world.source()).torch_dataset()
        assert isinstance(ds[0][0], np.ndarray)
        with pytest.raises(ModuleNotFoundError):
            nccid.research.open(researcher, source=world.source()).torch_dataset(tensors=True)
        return
    import torch
    from torch.utils.data import DataLoader

    data = nccid.research.open(researcher, source=world.source(), modality="xray")
    loader = DataLoader(data.torch_dataset(), batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 1, 64, 64) and images.dtype == torch.float32
    assert set(labels.tolist()) <= {0.0, 1.0}
    tensor, _ = data.torch_dataset(tensors=True)[0]
    assert isinstance(tensor, torch.Tensor)


@pytest.mark.parametrize("frame", ["images", "clinical", "patients"])
def test_polars_frames_without_polars_name_the_extra_to_install(world, researcher, monkeypatch,
                                                                frame):
    """polars is the `polars` extra, not a dependency: a plain install asking for a polars
    frame is told what to install, not left with a bare ModuleNotFoundError."""
    import sys

    data = nccid.research.open(researcher, source=world.source())
    monkeypatch.setitem(sys.modules, "polars", None)  # import polars fails, as when absent
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'nccid\[polars\]'"):
        getattr(data, frame)(polars=True)
    assert len(getattr(data, frame)()) > 0  # pandas frames need nothing extra
