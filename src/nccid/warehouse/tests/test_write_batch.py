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


def _direct_io_allowed(folder) -> bool:
    """Whether this filesystem takes O_DIRECT (ext4 and xfs do; tmpfs does not)."""
    import errno
    import os

    probe = os.path.join(folder, "probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600))
    except OSError as exc:
        assert exc.errno == errno.EINVAL
        return False
    os.unlink(probe)
    return True


def test_big_objects_bypass_the_page_cache_and_come_back_whole(local_warehouse, monkeypatch):
    import mmap

    from nccid.warehouse import storage

    monkeypatch.setattr(storage, "_direct_refused", set())
    direct = []
    real = storage._write_direct
    monkeypatch.setattr(storage, "_write_direct",
                        lambda fd, parts: direct.append(fd) or real(fd, parts))
    pixels = bytes(range(251)) * (storage.DIRECT_CHUNK // 100)  # not a multiple of a block
    mapped = mmap.mmap(-1, storage.DIRECT_CHUNK)
    mapped[:5] = b"tail!"
    objects = {
        "x/1.dcm": [b"H" * 333, memoryview(pixels)[7:]],              # spans chunks, odd end
        "x/2.dcm": [bytes(storage.DIRECT_CHUNK - 10), mapped[:10]],  # exactly one chunk
        "x/3.dcm": [b"s" * storage.DIRECT_FROM_BYTES],                 # the smallest direct one
        "x/4.dcm": [b"small" * 100],                                   # through the page cache
        "x/5.dcm": [mapped],                                           # a memory map, whole
    }
    batch = local_warehouse.batch()
    for key, parts in objects.items():
        batch.put(key, parts)
    published = batch.publish()

    for key, parts in objects.items():
        whole = b"".join(bytes(p) for p in parts)
        assert local_warehouse.read(key) == whole, key
        assert published[key] == hashlib.sha256(whole).hexdigest(), key
        assert local_warehouse.size(key) == len(whole)
    assert len(direct) == (4 if _direct_io_allowed(local_warehouse.root) else 0)


def test_a_direct_write_refused_midway_is_written_again_through_the_page_cache(
        local_warehouse, monkeypatch):
    import errno
    import os

    from nccid.warehouse import storage

    monkeypatch.setattr(storage, "_direct_refused", set())

    def refused_after_a_partial_write(fd, parts):
        os.write(fd, b"half written garbage")
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(storage, "_write_direct", refused_after_a_partial_write)
    data = bytes(range(256)) * (storage.DIRECT_FROM_BYTES // 200)
    published = local_warehouse.write_many({"y/1.dcm": data, "y/2.dcm": data[::-1]})
    assert local_warehouse.read("y/1.dcm") == data
    assert local_warehouse.read("y/2.dcm") == data[::-1]
    assert published["y/1.dcm"] == hashlib.sha256(data).hexdigest()
    if _direct_io_allowed(local_warehouse.root):  # and that filesystem is not asked again
        assert storage._direct_refused == {os.stat(local_warehouse.root).st_dev}


def test_a_filesystem_that_refuses_direct_writes_at_open_gets_buffered_ones(
        local_warehouse, monkeypatch):
    import errno
    import os

    from nccid.warehouse import storage

    monkeypatch.setattr(storage, "_direct_refused", set())
    real_open, opened = os.open, []

    def like_tmpfs(path, flags, mode=0o777):  # tmpfs answers O_DIRECT with EINVAL at open
        if TEMP_PREFIX in str(path):
            opened.append(bool(flags & storage._O_DIRECT))
        if flags & storage._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(storage.os, "open", like_tmpfs)
    data = bytes(range(256)) * (storage.DIRECT_FROM_BYTES // 100)
    local_warehouse.write_many({"t/1.dcm": data, "t/2.dcm": data[1:]})
    monkeypatch.undo()
    assert local_warehouse.read("t/1.dcm") == data and local_warehouse.read("t/2.dcm") == data[1:]
    if storage._O_DIRECT:  # asked once, then that filesystem is not asked again
        assert opened.count(True) == 1 and opened.count(False) == 2


def test_a_leftover_temporary_with_the_same_name_is_stepped_over(local_warehouse, monkeypatch):
    import itertools
    from pathlib import Path

    from nccid.warehouse import storage

    monkeypatch.setattr(storage, "_temporary_numbers", itertools.count(7))
    folder = Path(local_warehouse.root) / "u"
    folder.mkdir()
    leftover = folder / f"{TEMP_PREFIX}{storage._writer_name()}-7"  # (not expected: our name)
    leftover.write_bytes(b"not ours")
    local_warehouse.write_many({"u/1.json": b"one", "u/2.json": b"two"})
    assert leftover.read_bytes() == b"not ours"
    assert [local_warehouse.read(k) for k in ("u/1.json", "u/2.json")] == [b"one", b"two"]


def test_objects_are_readable_by_all_less_the_umask(local_warehouse):
    import os
    import stat

    from nccid.warehouse import storage

    big = b"b" * (storage.DIRECT_FROM_BYTES + 5)
    modes = {}
    for mask in (0o022, 0o027):
        previous = os.umask(mask)
        try:
            local_warehouse.write_many({f"m/{mask:o}.dcm": big, f"m/{mask:o}.json": b"{}"})
            local_warehouse.write_atomic(f"m/{mask:o}.one", b"written alone")
        finally:
            os.umask(previous)
        modes[mask] = {stat.S_IMODE(os.stat(local_warehouse.path(f"m/{mask:o}.{kind}")).st_mode)
                       for kind in ("dcm", "json", "one")}
    assert modes == {0o022: {0o644}, 0o027: {0o640}}
