"""store_image: atomic, checksummed, idempotent by SOP Instance UID, on local and real S3."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.warehouse.service import store_image, store_images
from nccid.warehouse.storage import Warehouse


def test_store_writes_image_header_and_record(site, backend, make_image):
    pseudonym, data, meta = make_image(0, "DX")
    stored = store_image(site, pseudonym, data, meta)

    record = stored.record
    assert stored.created
    set_name = PatientSet.objects.get(pseudonym=pseudonym).set_name
    assert record.storage_key == (f"{set_name}/xray/{pseudonym}/{meta.study_uid}/"
                                  f"{meta.series_uid}/{meta.sop_uid}.dcm")
    assert record.metadata_key == record.storage_key.replace("/xray/", "/xray-metadata/", 1)[:-4] + ".json"
    assert backend.read(record.storage_key) == data
    assert record.sha256 == hashlib.sha256(data).hexdigest() == backend.sha256(record.storage_key)
    assert record.size == len(data)
    assert (record.site, record.set_name, record.folder, record.modality) == (site, set_name, "xray", "DX")
    assert record.patient_age == int(meta.patient_age[:3])

    header = json.loads(backend.read(record.metadata_key))
    assert header["00080018"] == {"vr": "UI", "Value": [meta.sop_uid]}  # SOP Instance UID
    assert header["00100020"]["Value"] == [pseudonym]                   # Patient ID
    assert "7FE00010" not in header                                       # no pixel data
    assert len(backend.read(record.metadata_key)) < 4000


def test_header_from_a_parsed_dataset_has_no_pixels(site, local_warehouse, make_image):
    import pydicom

    pseudonym, data, meta = make_image(5, "CR")
    dataset = pydicom.dcmread(io.BytesIO(data))
    assert len(dataset.PixelData) <= 1024  # small enough to be inlined if not dropped
    record = store_image(site, pseudonym, data, meta, dataset=dataset).record
    header = json.loads(local_warehouse.read(record.metadata_key))
    assert "7FE00010" not in header
    assert header["00080060"]["Value"] == ["CR"]


def test_second_store_of_same_sop_uid_writes_nothing(site, backend, make_image):
    pseudonym, data, meta = make_image(1, "CT")
    first = store_image(site, pseudonym, data, meta)
    backend.delete(first.record.metadata_key)  # if anything were written again, this would return

    second = store_image(site, pseudonym, data, meta)
    assert not second.created
    assert second.record.pk == first.record.pk
    assert ImageRecord.objects.filter(sop_uid=meta.sop_uid).count() == 1
    assert not backend.exists(first.record.metadata_key)


def test_every_modality_is_kept(site, local_warehouse, make_image):
    for instance, modality in enumerate(["DX", "CR", "CT", "MR", "US", ""], start=1):
        pseudonym, data, meta = make_image(2, modality or "OT", instance=instance)
        if not modality:
            meta = type(meta)(**{**meta.as_dict(), "modality": ""})
        store_image(site, pseudonym, data, meta)
    folders = sorted(ImageRecord.objects.values_list("folder", flat=True))
    assert folders == ["ct", "mri", "other", "us", "xray", "xray"]
    assert len(local_warehouse.list()) == 12  # every image and its header


def test_failed_write_leaves_no_record_and_retry_stores_once(site, local_warehouse, make_image,
                                                              monkeypatch):
    pseudonym, data, meta = make_image(3, "DX")
    calls = {"n": 0}
    original = Warehouse.write_atomic

    def fail_on_header(self, key, payload):
        calls["n"] += 1
        if key.endswith(".json"):
            raise OSError("storage went away")
        return original(self, key, payload)

    monkeypatch.setattr(Warehouse, "write_atomic", fail_on_header)
    with pytest.raises(OSError, match="storage went away"):
        store_image(site, pseudonym, data, meta)
    monkeypatch.undo()
    assert calls["n"] == 2
    assert not ImageRecord.objects.filter(sop_uid=meta.sop_uid).exists()  # the commit never happened

    # The retry rewrites the same keys and commits exactly one record.
    stored = store_image(site, pseudonym, data, meta)
    assert stored.created
    assert ImageRecord.objects.filter(sop_uid=meta.sop_uid).count() == 1
    assert local_warehouse.read(stored.record.storage_key) == data
    assert sorted(local_warehouse.list()) == sorted([stored.record.storage_key, stored.record.metadata_key])


def test_bulk_store_matches_single_store(site, backend, make_image):
    items = [make_image(i % 5, "CT", series=1, instance=i) for i in range(1, 13)]
    first_single = store_image(site, *items[0])
    results = store_images(site, items + [items[3]])  # includes a repeat within the batch

    assert [r.created for r in results] == [False] + [True] * 11 + [False]
    assert results[0].record.pk == first_single.record.pk
    assert results[-1].record.pk == results[3].record.pk
    assert ImageRecord.objects.count() == 12
    for (_pseudonym, data, meta), result in zip(items, results, strict=False):
        assert result.record.sop_uid == meta.sop_uid
        assert backend.read(result.record.storage_key) == data
        assert json.loads(backend.read(result.record.metadata_key))["00080018"]["Value"] == [meta.sop_uid]
    again = store_images(site, items)
    assert not any(r.created for r in again)
    assert ImageRecord.objects.count() == 12
