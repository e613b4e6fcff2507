"""An intake batch publishes its objects inside its transaction; when the transaction fails
after that, the objects it wrote are removed again, so none is left that no row names. An
object stored under the same key before the batch stays."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import ImageBatch

from .conftest import make_the_next_commit_fail


def _batch(site, make_image, instances):
    batch = ImageBatch(site)
    images = [make_image(3, "CT", instance=n) for n in instances]
    for pseudonym, data, meta in images:
        batch.add(pseudonym, data, meta)
    return batch, images


def _database_gone(_results):
    raise OperationalError("server closed the connection unexpectedly")


def test_objects_of_a_batch_whose_transaction_failed_are_removed(site, backend, make_image):
    batch, images = _batch(site, make_image, (1, 2, 3))
    with pytest.raises(OperationalError):
        batch.commit(_database_gone)
    pseudonym = images[0][0]
    assert not ImageRecord.objects.exists()
    assert [k for k in backend.list("") if pseudonym in k] == []


def test_an_object_stored_before_the_batch_stays_when_the_batch_fails(site, backend, make_image,
                                                                     monkeypatch):
    batch, images = _batch(site, make_image, (1, 2))
    keys = [r.storage_key for r in batch._records.values()]
    backend.write_atomic(keys[0], images[0][1])  # left by an earlier attempt, say
    make_the_next_commit_fail(monkeypatch)  # (after the objects were published)
    with pytest.raises(OperationalError):
        batch.commit(lambda _results: None)
    assert backend.exists(keys[0])
    assert not backend.exists(keys[1])


def test_a_batch_whose_commit_fails_removes_its_objects(site, local_warehouse, make_image,
                                                        monkeypatch):
    batch, images = _batch(site, make_image, (1,))
    published = []
    real_publish = batch._writes.publish
    monkeypatch.setattr(batch._writes, "publish", lambda keys: published.extend(keys) or real_publish(keys))
    make_the_next_commit_fail(monkeypatch)
    with pytest.raises(OperationalError, match="could not commit"):
        batch.commit()
    monkeypatch.undo()
    assert len(published) == 2  # the image and its header were published, then removed
    assert [k for k in local_warehouse.list("") if images[0][0] in k] == []
    assert not ImageRecord.objects.exists()


def test_without_renameat2_an_object_stored_before_the_batch_still_stays(
        site, local_warehouse, make_image, monkeypatch):
    """A kernel or filesystem without RENAME_NOREPLACE: publish asks with a stat instead."""
    import ctypes

    from nccid.warehouse import storage

    class NoRenameat2:
        def __getattr__(self, name):
            if name == "renameat2":
                raise AttributeError(name)
            return getattr(ctypes.CDLL(None, use_errno=True), name)

    monkeypatch.setattr(storage, "_libc", NoRenameat2())
    batch, images = _batch(site, make_image, (1, 2))
    keys = [r.storage_key for r in batch._records.values()]
    local_warehouse.write_atomic(keys[0], images[0][1])
    make_the_next_commit_fail(monkeypatch)  # (after the objects were published)
    with pytest.raises(OperationalError):
        batch.commit(lambda _results: None)
    assert local_warehouse.exists(keys[0])
    assert not local_warehouse.exists(keys[1])
    assert batch._writes.replaced == {keys[0]}
