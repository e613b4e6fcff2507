"""A node stopped cleanly with instances in its spool says at the next start how many of them
were still to be stored: the spool replays its segments whole (the rest come back as
duplicates), so their records alone overstate what waits. The replay itself is unchanged."""

from __future__ import annotations

import logging

from nccid.imaging.node import _log_recovery
from nccid.imaging.spool import Spool


def _spool_with(folder, keyring, count: int) -> Spool:
    spool = Spool(folder, keyring)
    for i in range(count):
        spool.append("RTEST", "node", f"instance {i}".encode())
    return spool


def _drain(spool: Spool, count: int) -> list[bytes]:
    batch = spool.read_batch(max_records=count)
    spool.release(batch)
    return [bytes(record.data) for record in batch.records]


def test_a_start_counts_what_a_clean_stop_left_undrained(tmp_path, keyring, caplog):
    folder = tmp_path / "spool"
    spool = _spool_with(folder, keyring, 5)
    _drain(spool, 3)
    assert spool.backlog().records == 2
    spool.close()

    spool = Spool(folder, keyring)
    assert spool.backlog().records == 5  # the segment is replayed whole, as before
    assert spool.not_drained_at_start == 2
    with caplog.at_level(logging.INFO, logger="nccid"):
        _log_recovery(spool)
    assert ("recovering 2 instance(s) not yet stored when the node stopped; their spool "
            "segments are replayed whole: 5 record(s)") in caplog.text
    assert "the other 3 stored already (they come back as duplicates)" in caplog.text
    assert not (folder / "drained-to").exists()  # read once: a crash from here leaves none

    # This run replays the first 2 (stored already) and stops: still 2 wait, not 5 or 3.
    assert _drain(spool, 2) == [b"instance 0", b"instance 1"]
    spool.close()
    spool = Spool(folder, keyring)
    assert spool.not_drained_at_start == 2
    assert _drain(spool, 4) == [f"instance {i}".encode() for i in range(4)]
    spool.close()
    spool = Spool(folder, keyring)
    assert (spool.backlog().records, spool.not_drained_at_start) == (5, 1)
    assert _drain(spool, 5)[-1] == b"instance 4"
    spool.close()
    assert not (folder / "drained-to").exists()  # nothing left: nothing to note
    spool = Spool(folder, keyring)
    assert (spool.backlog().records, spool.not_drained_at_start) == (0, None)
    spool.close()


def test_records_appended_after_the_drain_position_count_in_later_segments(tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring, segment_bytes=200)  # a segment per record or so
    for i in range(6):
        spool.append("RTEST", "node", b"x" * 100 + bytes([i]))
    _drain(spool, 4)
    spool.close()
    spool = Spool(folder, keyring, segment_bytes=200)
    assert spool.not_drained_at_start == 2
    assert spool.backlog().records == 2
    spool.close()


def test_without_a_clean_stop_the_start_says_segments_replay_whole(tmp_path, keyring, caplog):
    folder = tmp_path / "spool"
    spool = _spool_with(folder, keyring, 3)
    spool.close()
    (folder / "drained-to").unlink()  # as a killed node leaves it: no mark
    spool = Spool(folder, keyring)
    assert spool.not_drained_at_start is None
    with caplog.at_level(logging.INFO, logger="nccid"):
        _log_recovery(spool)
    spool.close()
    assert ("recovering 3 instance(s) (0.0 MB) left in the spool (replayed by whole segments: "
            "those stored before the node stopped come back as duplicates)") in caplog.text


def test_a_mark_that_is_no_record_s_start_is_not_believed(tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = _spool_with(folder, keyring, 3)
    spool.close()
    seq = (folder / "drained-to").read_text().split()[0]
    (folder / "drained-to").write_text(f"{seq} 9\n")  # mid-record
    spool = Spool(folder, keyring)
    assert spool.not_drained_at_start is None
    spool.close()
