"""A large spooled record is read and decrypted piece by piece into memory of its own: the
worker process held a 600 MB instance twice (its ciphertext, read whole, beside the file),
1.2 GB, and kept the freed heap for the process afterwards."""

from __future__ import annotations

import mmap
import os
import tracemalloc

import pytest
from cryptography.exceptions import InvalidTag

from nccid.imaging.spool import (
    LARGE_RECORD,
    PIECE_BYTES,
    RECORD,
    Spool,
    open_record,
    quarantined,
    requeue_quarantined,
)

SIZE = LARGE_RECORD + 5 * 1024 * 1024 + 7  # a few pieces past the threshold, not whole pieces


def _file() -> bytes:
    return os.urandom(1024 * 1024) * (SIZE // (1024 * 1024)) + os.urandom(SIZE % (1024 * 1024))


def _opened_with_peak(open_it):
    """What ``open_it()`` returns, and the most the Python heap held meanwhile (bytes)."""
    tracemalloc.start()
    try:
        result = open_it()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("sealed", [True, False], ids=["by the worker", "by the spool"])
def test_a_large_record_is_never_held_twice(tmp_path, keyring, sealed):
    folder = tmp_path / "spool"
    data = _file()
    spool = Spool(folder, keyring)
    spool.append("RTEST", "node", data)
    if not sealed:  # a record an earlier run left is decrypted by the spool itself
        spool.close()
        spool = Spool(folder, keyring)

    def open_it():
        batch = spool.read_batch(sealed=sealed)
        [record] = batch.records
        return open_record(folder, keyring, record) if sealed else (
            record.site_code, record.source, record.data)

    (code, source, opened), peak = _opened_with_peak(open_it)
    assert (code, source) == ("RTEST", "node")
    assert isinstance(opened, mmap.mmap)  # unmapped, back to the system, once dropped
    assert opened[:] == data
    # A few pieces of 1 MB at a time (the file itself is mapped, not on the heap); before, the
    # token read whole and the file beside it: over twice its size.
    assert peak < 8 * PIECE_BYTES, f"the Python heap held {peak:,} bytes opening {SIZE:,}"
    spool.close()


def test_a_large_record_altered_anywhere_fails_authentication(tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    spool.append("RTEST", "node", _file())
    [record] = spool.read_batch(sealed=True).records
    path = folder / "segment-0000000000000001.log"
    with open(path, "r+b") as handle:
        handle.seek(record.offset + RECORD.size + 12 + SIZE // 2)  # in a middle piece
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(InvalidTag):
        open_record(folder, keyring, record)
    spool.close()


def test_a_small_record_is_still_bytes(tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    spool.append("RTEST", "node", [b"head", b"body" * 1000])
    [record] = spool.read_batch(sealed=True).records
    assert open_record(folder, keyring, record) == ("RTEST", "node", b"head" + b"body" * 1000)
    spool.close()


def test_a_large_quarantined_record_is_sent_again_whole(tmp_path, keyring):
    """``nccid images quarantine --requeue``: the record comes back as a mapping, appended as
    one buffer (not taken for a list of its bytes)."""
    folder = tmp_path / "spool"
    data = _file()
    spool = Spool(folder, keyring)
    spool.append("RTEST", "node", data)
    batch = spool.read_batch(sealed=True)
    spool.quarantine(batch.records[0])
    spool.release(batch)
    count, peak = _opened_with_peak(lambda: requeue_quarantined(spool))
    assert count == 1 and not quarantined(folder)
    # pieces at a time: appended as the 1-byte items of its iteration, it held hundreds of MB
    assert peak < 8 * PIECE_BYTES, f"the Python heap held {peak:,} bytes requeueing {SIZE:,}"
    [record] = spool.read_batch(sealed=True).records
    code, source, opened = open_record(folder, keyring, record)
    assert (code, source, opened[:] == data) == ("RTEST", "node", True)
    spool.close()
