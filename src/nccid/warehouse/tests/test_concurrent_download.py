"""Processes mirroring the same object into one folder at once (every gunicorn worker, the CLI
and the node re-mirror the catalogue after a refresh) all succeed and leave it whole; a
download whose bytes do not match the expected SHA-256 replaces nothing."""

from __future__ import annotations

import hashlib
import multiprocessing
import os

import pytest

from nccid.warehouse.storage import StorageError, Warehouse

KEY = "catalogue/images/part-000001.parquet"
WAIT = 120  # seconds: only if the other process died without saying so


class _PausingSource:
    """An object being read that stops after its first read until ``resume`` is set."""

    def __init__(self, source, paused, resume) -> None:
        self.source, self.paused, self.resume = source, paused, resume

    def read(self, size=-1):
        chunk = self.source.read(size)
        if not self.paused.is_set():
            self.paused.set()
            self.resume.wait(WAIT)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.source.close()


def _download(url, options, target, expected, results, start_after, paused, finished) -> None:
    """In a child process: download KEY to ``target``; with ``paused`` the download stops
    after its first read until ``finished`` (the other download) is set."""
    warehouse = Warehouse(url, options)
    if paused is not None:
        opened = warehouse.open
        warehouse.open = lambda key: _PausingSource(opened(key), paused, finished)
    if start_after is not None:
        start_after.wait(WAIT)
    try:
        warehouse.download(KEY, target, expected)
        results.put(("ok", ""))
    except Exception as exc:  # reported to the test, which shows it
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        if finished is not None:
            finished.set()


def test_two_processes_downloading_one_object_both_succeed(backend, tmp_path):
    data = os.urandom(3 * 1024 * 1024)
    expected = backend.write_atomic(KEY, data)
    target = tmp_path / "cache" / "images" / "part-000001.parquet"
    spawn = multiprocessing.get_context("spawn")
    results, paused, finished = spawn.Queue(), spawn.Event(), spawn.Event()
    # The first download stops mid-copy while the second runs from start to end.
    first = spawn.Process(target=_download, args=(backend.url, backend.options, target, expected,
                                                  results, None, paused, finished))
    second = spawn.Process(target=_download, args=(backend.url, backend.options, target, expected,
                                                   results, paused, None, finished))
    for process in (first, second):
        process.start()
    outcomes = [results.get(timeout=2 * WAIT) for _ in range(2)]
    for process in (first, second):
        process.join(WAIT)

    assert outcomes == [("ok", ""), ("ok", "")]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == expected
    assert os.listdir(target.parent) == [target.name]  # no temporary left behind


def test_mismatched_download_replaces_nothing_and_says_why(backend, tmp_path):
    backend.write_atomic(KEY, b"the object as it is now")
    target = tmp_path / "cache" / "part-000001.parquet"
    target.parent.mkdir()
    target.write_bytes(b"the copy made earlier")

    with pytest.raises(StorageError, match=r"catalogue/images/part-000001.parquet: the downloaded "
                                           r"object's SHA-256 is .* expected 0000"):
        backend.download(KEY, target, "0" * 64)

    assert target.read_bytes() == b"the copy made earlier"
    assert os.listdir(target.parent) == [target.name]


def test_target_already_holding_the_expected_bytes_is_kept(backend, tmp_path):
    target = tmp_path / "part-000001.parquet"
    target.write_bytes(b"mirrored by another process")
    # the object is not even read (it may be gone from the store by now)
    backend.download(KEY, target, hashlib.sha256(b"mirrored by another process").hexdigest())
    assert target.read_bytes() == b"mirrored by another process"


def test_cache_prunes_temporaries_of_killed_downloads_but_not_live_ones(tmp_path):
    import time

    from nccid.warehouse.catalogue import _prune_cache
    from nccid.warehouse.storage import STALE_TEMPORARY, TEMP_PREFIX

    (tmp_path / "images").mkdir()
    killed, live = tmp_path / "images" / f"{TEMP_PREFIX}41-0", tmp_path / "images" / f"{TEMP_PREFIX}42-0"
    killed.write_bytes(b"half")
    live.write_bytes(b"half")
    long_ago = time.time() - STALE_TEMPORARY - 60
    os.utime(killed, (long_ago, long_ago))

    _prune_cache(tmp_path, {"files": {}})

    assert not killed.exists() and live.exists()
