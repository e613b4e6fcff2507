"""A batch published to S3 checks the sizes stored, as a single write does (docs/warehouse.md,
"Atomic writes"): one listing of each folder it wrote. An object stored short (a store or a
proxy that cut the body) fails the batch naming the key; it published without a word."""

from __future__ import annotations

import pytest
import s3fs

from nccid.warehouse.storage import StorageError, Warehouse


@pytest.fixture
def warehouse(s3_server):
    return Warehouse(f"s3://{s3_server.make_bucket('sizes')}/nccid", s3_server.options)


def _store_cuts(monkeypatch, victim: str) -> None:
    """PutObject of ``victim`` stores its body less the last byte, and answers success."""
    real_call = s3fs.S3FileSystem._call_s3

    async def cut(self, method, *args, **kwargs):
        if method == "put_object" and kwargs["Key"].endswith(victim):
            kwargs["Body"] = kwargs["Body"][:-1]
        return await real_call(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", cut)


def test_an_object_stored_short_fails_the_batch(warehouse, monkeypatch):
    _store_cuts(monkeypatch, "b/2.dcm")
    batch = warehouse.batch()
    for key in ("a/1.dcm", "b/2.dcm", "b/3.dcm"):
        batch.put(key, [b"x" * 1000, b"y" * 1000])
    with pytest.raises(StorageError, match=r"^b/2\.dcm: stored 1999 bytes, expected 2000$"):
        batch.publish()


def test_whole_objects_publish_and_return_their_digests(warehouse):
    objects = {f"s/{n % 3}/{n}.dcm": bytes([n]) * (1000 + n) for n in range(12)}
    digests = warehouse.write_many(objects)
    assert sorted(digests) == sorted(objects)
    assert {key: warehouse.size(key) for key in objects} == {k: len(v) for k, v in objects.items()}
