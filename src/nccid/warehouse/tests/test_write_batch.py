"""WriteBatch: objects written from several buffers, published together or not at all."""

from __future__ import annotations

import hashlib

from nccid.warehouse.storage import TEMP_PREFIX


def test_published_objects_appear_whole_and_discarded_ones_leave_nothing(backend):
    header, pixels = b"H" * 300, bytes(range(256)) * 4000
    batch = backend.batch()
    batch.put("training/ct/P/1/1.1/1.1.1.dcm", [header, memoryview(pixels)[10:]])
    batch.put("training/ct-metadata/P/1/1.1/1.1.1.json", b"{}")
    batch.put("training/ct/P/1/1.1/1.1.2.dcm", b"never published")
    digests = batch.digests()
    whole = header + pixels[10:]
    assert digests["training/ct/P/1/1.1/1.1.1.dcm"] == hashlib.sha256(whole).hexdigest()
    assert not backend.list()  # nothing visible before publish

    published = batch.publish(["training/ct/P/1/1.1/1.1.1.dcm",
                               "training/ct-metadata/P/1/1.1/1.1.1.json"])
    batch.discard()
    assert set(published) == {"training/ct/P/1/1.1/1.1.1.dcm",
                              "training/ct-metadata/P/1/1.1/1.1.1.json"}
    assert backend.list() == ["training/ct-metadata/P/1/1.1/1.1.1.json",
                              "training/ct/P/1/1.1/1.1.1.dcm"]
    assert backend.read("training/ct/P/1/1.1/1.1.1.dcm") == whole
    if backend.is_local:
        from pathlib import Path

        leftovers = [p for p in Path(backend.root).rglob("*") if p.name.startswith(TEMP_PREFIX)]
        assert not leftovers


def test_write_many_is_durable_in_one_step_and_overwrites(backend):
    backend.write_atomic("a/x.json", b"old")
    digests = backend.write_many({"a/x.json": b"new", "a/y.json": b"y", "b/z.json": b"z"})
    assert digests["a/x.json"] == hashlib.sha256(b"new").hexdigest()
    assert [backend.read(k) for k in ("a/x.json", "a/y.json", "b/z.json")] == [b"new", b"y", b"z"]


def test_stale_temporaries_of_a_killed_writer_are_removed_by_the_next_batch(local_warehouse):
    import os
    import time
    from pathlib import Path

    from nccid.warehouse.storage import STALE_TEMPORARY

    local_warehouse.write_atomic("s/1/a.dcm", b"a")
    folder = Path(local_warehouse.root) / "s" / "1"
    stale, fresh = folder / f"{TEMP_PREFIX}killed", folder / f"{TEMP_PREFIX}in-progress"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    old = time.time() - STALE_TEMPORARY - 60
    os.utime(stale, (old, old))

    batch = local_warehouse.batch()
    batch.put("s/1/b.dcm", b"b")
    batch.publish()
    assert not stale.exists() and fresh.exists()  # a live writer's temporary is left alone
    assert local_warehouse.list("s") == ["s/1/a.dcm", "s/1/b.dcm"]
