"""store_image writes the image and then its header JSON inside the row's transaction; when the
header write (or the commit) fails, the objects this call wrote are removed again, so none is
left that no row names. An object stored under the same key before the call stays."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import StorageError, assign_set, store_image
from nccid.warehouse.storage import Warehouse

from .conftest import make_the_next_commit_fail


@pytest.fixture
def header_write_fails(monkeypatch):
    real_write = Warehouse.write_atomic

    def write(self, key, data):
        if key.endswith(".json"):
            raise StorageError(f"{key}: the disk filled up")
        return real_write(self, key, data)

    monkeypatch.setattr(Warehouse, "write_atomic", write)


def _keys_of(warehouse, pseudonym):
    return [key for key in warehouse.list("") if pseudonym in key]


def test_a_failed_header_write_removes_the_image_object(site, backend, make_image, header_write_fails):
    pseudonym, data, meta = make_image(2, "CT")
    with pytest.raises(StorageError, match="the disk filled up"):
        store_image(site, pseudonym, data, meta)
    assert not ImageRecord.objects.exists()
    assert _keys_of(backend, pseudonym) == []


def test_an_image_object_stored_before_stays_when_the_header_write_fails(
        site, local_warehouse, make_image, monkeypatch):
    pseudonym, data, meta = make_image(2, "CT")
    first = store_image(site, pseudonym, data, meta).record
    ImageRecord.objects.all().delete()  # an object with no row: left by an earlier attempt, say
    local_warehouse.delete(first.metadata_key)
    real_write = Warehouse.write_atomic
    monkeypatch.setattr(Warehouse, "write_atomic", lambda self, key, body: (
        (_ for _ in ()).throw(StorageError("header refused")) if key.endswith(".json")
        else real_write(self, key, body)))
    with pytest.raises(StorageError, match="header refused"):
        store_image(site, pseudonym, data, meta)
    assert _keys_of(local_warehouse, pseudonym) == [first.storage_key]


def test_a_failed_commit_removes_both_objects(site, local_warehouse, make_image, monkeypatch):
    pseudonym, data, meta = make_image(2, "CT")
    assign_set(site, pseudonym)  # decided before: store_image's transaction is the first one
    make_the_next_commit_fail(monkeypatch)
    with pytest.raises(OperationalError, match="could not commit"):
        store_image(site, pseudonym, data, meta)
    monkeypatch.undo()
    assert not ImageRecord.objects.exists()
    assert _keys_of(local_warehouse, pseudonym) == []
