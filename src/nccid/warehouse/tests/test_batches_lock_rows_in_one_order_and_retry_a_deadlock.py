"""Two importers of the same images in opposite orders deadlocked in PostgreSQL: each batch
inserted its rows in file order, so each held an image the other waited for. A batch now
inserts its rows in SOP UID order (the order every writer locks them in), and a deadlock
or serialization failure left (PostgreSQL's 40P01 / 40001) rolls its transaction back and
tries it again, ``COMMIT_TRIES`` times in all: the images stored once, nothing published
for a try that failed."""

from __future__ import annotations

import psycopg.errors
import pytest
from django.db import OperationalError, connection

from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import COMMIT_TRIES, ImageBatch, lock_conflict, store_image

pytestmark = pytest.mark.django_db

INSERT_IMAGES = 'INSERT INTO "warehouse_imagerecord"'


def _reversed_batch(site, make_image, count: int = 5):
    """A batch whose images are added in descending SOP UID order."""
    images = sorted((make_image(4, "CT", instance=n) for n in range(1, count + 1)),
                    key=lambda image: image[2].sop_uid, reverse=True)
    batch = ImageBatch(site)
    for pseudonym, data, meta in images:
        batch.add(pseudonym, data, meta)
    return batch, images


def _flat(params) -> list:
    """The values of a statement's parameters, rows or arrays (PostgreSQL's UNNEST) flattened."""
    out = []
    for value in params or ():
        out.extend(_flat(value) if isinstance(value, (list, tuple)) else [value])
    return out


class InsertedImages:
    """Records the SOP UIDs of each image row insert, in the order the statement gives them."""

    def __init__(self, sop_uids) -> None:
        self.sop_uids, self.statements = set(sop_uids), []

    def __call__(self, execute, sql, params, many, context):
        if sql.startswith(INSERT_IMAGES):
            self.statements.append([v for v in _flat(params) if v in self.sop_uids])
        return execute(sql, params, many, context)


class Deadlocks:
    """The image row insert fails ``times`` times as PostgreSQL's deadlock victim does (Django's
    OperationalError, caused by psycopg's DeadlockDetected), then goes through."""

    def __init__(self, times: int) -> None:
        self.left, self.raised = times, 0

    def __call__(self, execute, sql, params, many, context):
        if sql.startswith(INSERT_IMAGES) and self.left:
            self.left -= 1
            self.raised += 1
            raise OperationalError("deadlock detected") from psycopg.errors.DeadlockDetected(
                "deadlock detected")
        return execute(sql, params, many, context)


def test_a_batch_inserts_its_rows_in_sop_uid_order(site, local_warehouse, make_image):
    batch, images = _reversed_batch(site, make_image)
    uids = [meta.sop_uid for _, _, meta in images]
    inserts = InsertedImages(uids)
    with connection.execute_wrapper(inserts):
        batch.commit()
    assert inserts.statements == [sorted(uids)]


def test_rows_inserted_one_by_one_after_a_conflict_keep_that_order(site, local_warehouse,
                                                                    make_image):
    batch, images = _reversed_batch(site, make_image)
    uids = [meta.sop_uid for _, _, meta in images]
    first = images[2]  # stored by another writer first: the batch's insert conflicts
    store_image(site, first[0], first[1], first[2])
    inserts = InsertedImages(uids)
    with connection.execute_wrapper(inserts):
        results = batch.commit()
    one_by_one = [uid for statement in inserts.statements[1:] for uid in statement]
    assert one_by_one == sorted(uids)
    assert [uid for uid in uids if not results[uid].created] == [first[2].sop_uid]


def test_a_deadlock_tries_the_batch_s_transaction_again(site, local_warehouse, make_image):
    batch, images = _reversed_batch(site, make_image)
    counted = []
    deadlocks = Deadlocks(times=COMMIT_TRIES - 1)
    with connection.execute_wrapper(deadlocks):
        results = batch.commit(lambda stored: counted.append(len(stored)))
    assert deadlocks.raised == COMMIT_TRIES - 1
    assert counted == [len(images)]  # (the tries rolled back never reached the receipts)
    assert all(r.created for r in results.values())
    assert ImageRecord.objects.count() == len(images)
    for record in ImageRecord.objects.all():
        assert local_warehouse.exists(record.storage_key)
        assert local_warehouse.exists(record.metadata_key)


def test_a_deadlock_that_persists_is_raised_and_leaves_nothing(site, local_warehouse,
                                                              make_image):
    batch, images = _reversed_batch(site, make_image)
    deadlocks = Deadlocks(times=COMMIT_TRIES + 5)
    with connection.execute_wrapper(deadlocks), pytest.raises(OperationalError) as raised:
        batch.commit()
    assert deadlocks.raised == COMMIT_TRIES
    assert lock_conflict(raised.value)
    assert not ImageRecord.objects.exists()
    assert [k for k in local_warehouse.list("") if images[0][0] in k] == []


def test_only_a_lock_conflict_is_tried_again(site, local_warehouse, make_image):
    batch, _ = _reversed_batch(site, make_image)
    calls = []

    def gone(_results):
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        batch.commit(gone)
    assert calls == [1]
    assert not lock_conflict(OperationalError("server closed the connection unexpectedly"))
    assert lock_conflict(psycopg.errors.SerializationFailure("could not serialize access"))
