"""The node's spool: encrypted, durable, ordered; torn tails cut, moved records refused; and a
node killed with received files still in the spool stores each exactly once after a restart."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest
from cryptography.exceptions import InvalidTag

from nccid.identity.keys import load_keyring
from nccid.imaging.dcmtk import dcmtk_tool
from nccid.imaging.outcome import IngestOutcome, IngestStatus
from nccid.imaging.spool import (
    END,
    FILE_MAGIC,
    RECORD,
    Spool,
    SpoolError,
    open_record,
    spool_backlog,
)
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import people

from .conftest import free_port, original_sop, wait_for_port, write_study

STORESCU = dcmtk_tool("storescu")  # dcmtk's, not pynetdicom's script of that name

NCCID = [sys.executable, "-m", "nccid.cli.main"]


def _segments(folder) -> list:
    return sorted(folder.glob("segment-*.log"))


def _drain_all(spool: Spool) -> list:
    records = []
    while True:
        batch = spool.read_batch(max_records=2)
        if not (batch.records or batch.skipped or batch.finished):
            return records
        records += batch.records
        spool.release(batch)


def test_records_come_back_in_order_and_the_drained_spool_is_empty(tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring, segment_bytes=100)  # every record gets its own segment
    sent = [("RTEST", "node", b"first" * 50), ("OTHER", "node", b"second"),
            ("RTEST", "import", b"third" * 10)]
    for item in sent:
        spool.append(*item)
    assert len(_segments(folder)) == 3
    spool.close()

    again = Spool(folder, keyring, segment_bytes=100)  # a restart replays what is there
    assert again.backlog().records == 3
    assert spool_backlog(folder).records == 3
    batch = again.read_batch(max_records=10)
    assert [(r.site_code, r.source, r.data) for r in batch.records] == sent
    assert again.backlog().records == 3  # nothing is forgotten before it has an outcome
    again.release(batch)
    assert again.backlog().records == 0 and again.wait_empty(0)
    assert _segments(folder) == []
    again.append("RTEST", "node", b"after the restart")
    assert [r.data for r in _drain_all(again)] == [b"after the restart"]
    assert _segments(folder) == []
    again.close()


def test_a_batch_read_after_one_in_flight_continues_it_and_both_release_in_order(
        tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring, segment_bytes=200)  # two records to a segment
    sent = [b"%d" % n * 40 for n in range(6)]
    for data in sent:
        spool.append("RTEST", "node", data)
    assert len(_segments(folder)) == 3

    one = spool.read_batch(max_records=3)
    two = spool.read_batch(max_records=3, after=one)  # read before ``one`` is released
    assert [r.data for r in one.records + two.records] == sent
    assert one.finished and two.finished and not set(one.finished) & set(two.finished)
    assert spool.read_batch(after=two).records == []
    assert spool.backlog().records == 6  # nothing forgotten before its outcome

    spool.release(one)
    assert spool.backlog().records == 3
    spool.release(two)
    assert spool.backlog().records == 0 and _drain_all(spool) == []
    assert _segments(folder) == []
    spool.close()


def test_an_unreleased_batch_is_read_again_after_a_restart(tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    for i in range(5):
        spool.append("RTEST", "node", f"instance {i}".encode())
    first = spool.read_batch(max_records=2)
    spool.release(first)
    spool.read_batch(max_records=2)  # in hand when the process dies: no release
    spool.close()
    # The whole segment stays until every record in it has an outcome: the replay starts at
    # its beginning (ingest_many is idempotent, so the first two come back DUPLICATE).
    again = Spool(folder, keyring)
    assert [r.data for r in _drain_all(again)] == [f"instance {i}".encode() for i in range(5)]
    again.close()


def test_concurrent_appends_and_a_drain_see_every_record_once_in_order(tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring, segment_bytes=2000)  # many segments come and go
    writers, each = 4, 60
    received: list[bytes] = []
    failures: list[BaseException] = []

    def drain() -> None:
        deadline = time.monotonic() + 60
        try:
            while len(received) < writers * each and time.monotonic() < deadline:
                seen = spool.appends
                batch = spool.read_batch(max_records=7)
                if batch.records or batch.skipped or batch.finished:
                    received.extend(bytes(r.data) for r in batch.records)
                    spool.release(batch)
                else:
                    spool.wait_for_more(seen, timeout=1.0)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    def write(n: int) -> None:
        for i in range(each):
            spool.append("RTEST", "node", f"{n}:{i:03d}".encode() * 20)

    threads = [threading.Thread(target=drain)] + [
        threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not failures and not any(t.is_alive() for t in threads)
    assert len(received) == writers * each
    for n in range(writers):  # each sender's records in the order it sent them, once
        mine = [r for r in received if r.startswith(f"{n}:".encode())]
        assert mine == [f"{n}:{i:03d}".encode() * 20 for i in range(each)]
    assert spool.wait_empty(0) and _segments(folder) == []
    spool.close()


def _closed_spool_of(folder, keyring, count: int, size: int):
    """A spool holding ``count`` records of ``size`` bytes (record i is byte i), closed as a
    crash would leave it; its only segment's path."""
    spool = Spool(folder, keyring)
    for i in range(count):
        spool.append("RTEST", "node", bytes([i]) * size)
    spool.close()
    return _segments(folder)[0]


def test_a_torn_last_record_is_cut_and_earlier_records_survive(tmp_path, keyring):
    folder = tmp_path / "spool"
    path = _closed_spool_of(folder, keyring, 3, 1000)
    whole = path.stat().st_size
    os.truncate(path, whole - 300)  # the crash came in the middle of the third append

    again = Spool(folder, keyring)
    assert again.backlog().records == 2
    # (the segment ends with the END mark after its last record)
    assert path.stat().st_size == whole - len(END) - (RECORD.size + 28 + 2 + 5 + 4 + 1000)
    assert [r.data for r in _drain_all(again)] == [bytes([0]) * 1000, bytes([1]) * 1000]
    again.close()


def test_a_last_record_failing_its_tag_is_cut_as_torn(tmp_path, keyring):
    folder = tmp_path / "spool"
    path = _closed_spool_of(folder, keyring, 2, 100)
    raw = bytearray(path.read_bytes())
    raw[-len(END) - 1] ^= 0xFF  # full length on disk, but the blocks never reached it whole
    path.write_bytes(bytes(raw))

    again = Spool(folder, keyring)
    assert [r.data for r in _drain_all(again)] == [bytes([0]) * 100]
    assert again.backlog().records == 0 and _segments(folder) == []
    assert not list(folder.glob("*.corrupt"))
    again.close()


def _record_spans(path) -> list[tuple[int, int]]:
    data = path.read_bytes()
    spans, offset = [], len(FILE_MAGIC)
    while offset < len(data):
        magic, length = RECORD.unpack_from(data, offset)
        if magic != b"NCSR":  # the END mark after the last record
            break
        spans.append((offset, offset + RECORD.size + length))
        offset += RECORD.size + length
    return spans


def test_a_record_moved_to_another_offset_or_segment_fails_authentication(tmp_path, keyring):
    folder = tmp_path / "spool"
    size = len(FILE_MAGIC) + 3 * (RECORD.size + 28 + 2 + 5 + 4 + 64)
    spool = Spool(folder, keyring, segment_bytes=size)  # three records per segment
    for letter in b"ABCDEF":
        spool.append("RTEST", "node", bytes([letter]) * 64)
    spool.close()
    one, two = _segments(folder)
    raw1, raw2 = one.read_bytes(), two.read_bytes()
    (a0, a1), (b0, b1), _ = _record_spans(one)
    (d0, d1), _, _ = _record_spans(two)
    # D to A's place (same offset, other segment), A to B's place (same segment, other
    # offset), B to D's place (both). C, E and F stay where they were written.
    one.write_bytes(raw1[:a0] + raw2[d0:d1] + raw1[a0:a1] + raw1[b1:])
    two.write_bytes(raw2[:d0] + raw1[b0:b1] + raw2[d1:])

    again = Spool(folder, keyring, segment_bytes=size)
    assert again.backlog().records == 6
    assert [r.data for r in _drain_all(again)] == [b"C" * 64, b"E" * 64, b"F" * 64]
    assert again.backlog().records == 0
    assert sorted(p.name for p in folder.glob("*.corrupt")) == [
        one.name + ".corrupt", two.name + ".corrupt"]  # kept for an operator
    assert _segments(folder) == []
    again.close()


def test_sealed_records_are_opened_by_the_reader_and_earlier_runs_records_by_the_spool(
        tmp_path, keyring):
    folder = tmp_path / "spool"
    earlier = Spool(folder, keyring)
    earlier.append("OLD", "node", b"left by a crash")
    earlier.close()
    spool = Spool(folder, keyring)
    spool.append("RTEST", "node", b"first")
    spool.append("OTHER", "import", b"second")

    batch = spool.read_batch(sealed=True)
    old, *sealed = batch.records
    assert not old.sealed and bytes(old.data) == b"left by a crash"  # checked here, cut if torn
    assert [r.sealed for r in sealed] == [True, True]
    assert all(r.site_code == "" and r.data is None for r in sealed)  # nothing read here
    opened = [open_record(folder, keyring, r) for r in sealed]
    assert [(code, source, bytes(data)) for code, source, data in opened] == [
        ("RTEST", "node", b"first"), ("OTHER", "import", b"second")]
    spool.release(batch)
    assert spool.backlog().records == 0
    spool.close()


def test_a_sealed_record_failing_authentication_keeps_its_segment_for_an_operator(
        tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    spool.append("RTEST", "node", b"A" * 64)
    spool.append("RTEST", "node", b"B" * 64)
    path = _segments(folder)[0]
    (_, a1), _ = _record_spans(path)
    raw = bytearray(path.read_bytes())
    raw[a1 - 1] ^= 0xFF  # the disk altered the first record after its append
    path.write_bytes(bytes(raw))

    batch = spool.read_batch(sealed=True)
    first, second = batch.records
    with pytest.raises(InvalidTag):
        open_record(folder, keyring, first)
    assert bytes(open_record(folder, keyring, second)[2]) == b"B" * 64
    spool.record_corrupt(first)
    spool.release(batch)
    spool.append("RTEST", "node", b"C" * 64)  # appends go on, to a new segment
    assert [p.name for p in folder.glob("*.corrupt")] == [path.name + ".corrupt"]
    spool.close()


def _spares(folder) -> list:
    return sorted(folder.glob("spare-*.log"))


def test_a_drained_segment_is_overwritten_by_the_next_and_its_old_records_never_return(
        tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    for letter in b"ABC":
        spool.append("RTEST", "node", bytes([letter]) * 500)
    assert [bytes(r.data) for r in _drain_all(spool)] == [b"A" * 500, b"B" * 500, b"C" * 500]
    (spare,) = _spares(folder)  # drained: kept to be overwritten, not deleted
    assert _segments(folder) == []
    inode = spare.stat().st_ino

    spool.append("RTEST", "node", b"new" * 10)  # shorter: old records lie beyond it
    (segment,) = _segments(folder)
    assert segment.stat().st_ino == inode and _spares(folder) == []
    assert spool_backlog(folder).records == 1  # a scan stops at the END mark
    spool.close()

    again = Spool(folder, keyring)
    assert again.backlog().records == 1
    assert [bytes(r.data) for r in _drain_all(again)] == [b"new" * 10]
    assert not list(folder.glob("*.corrupt"))
    again.close()


def test_a_torn_append_into_a_reused_segment_is_cut_and_old_records_are_not_replayed(
        tmp_path, keyring, caplog):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    for letter in b"ABC":  # same sizes as the records below: their frames line up
        spool.append("RTEST", "node", bytes([letter]) * 500)
    _drain_all(spool)
    (spare,) = _spares(folder)
    old = spare.read_bytes()
    spool.append("RTEST", "node", b"D" * 500)
    spool.append("RTEST", "node", b"E" * 500)  # torn: only its header reached the disk
    spool.close()
    (segment,) = _segments(folder)
    new = segment.read_bytes()
    _, (e0, _) = _record_spans(segment)
    segment.write_bytes(new[:e0 + RECORD.size] + old[e0 + RECORD.size:])
    # On disk now: D; E's header followed by B's old token; the old C; the old END mark.

    again = Spool(folder, keyring)
    assert again.backlog().records == 1
    assert "torn record(s)" in caplog.text
    assert [bytes(r.data) for r in _drain_all(again)] == [b"D" * 500]
    assert not list(folder.glob("*.corrupt"))
    again.close()


def test_spares_go_when_asked_when_the_spool_closes_and_when_it_starts(tmp_path, keyring):
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring, segment_bytes=100)  # a segment per record
    for i in range(3):
        spool.append("RTEST", "node", bytes([i]) * 100)
    _drain_all(spool)
    assert len(_spares(folder)) == 2 and spool.has_spares  # at most two are kept
    spool.discard_spares()
    assert _spares(folder) == [] and not spool.has_spares
    for i in range(2):
        spool.append("RTEST", "node", bytes([i]) * 100)
    _drain_all(spool)
    assert _spares(folder)
    spool.close()
    assert _spares(folder) == []
    (folder / f"spare-{7:016d}.log").write_bytes(b"left by a crash")
    Spool(folder, keyring).close()
    assert _spares(folder) == []


def test_spool_files_are_private_and_hold_no_identifier(tmp_path, keyring):
    person = people(1, seed=31)[0]
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    ds = synthetic_instance(person, modality="CT", plant=True, patient_id=person.nhs_number)
    data = to_bytes(ds)
    needles = [*person.identifiers(), str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)]
    assert find_leaks([tmp_path / "x"], needles) == []
    (tmp_path / "x").write_bytes(data)
    assert find_leaks([tmp_path / "x"], needles)  # the planted identifiers are really there
    spool.append("RTEST", "node", data)
    spool.append("RTEST", "node", data)

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = [p for p in folder.iterdir() if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert find_leaks([folder], needles) == []
    spool.close()


def test_one_spool_folder_serves_one_node(tmp_path, keyring):
    spool = Spool(tmp_path / "spool", keyring)
    with pytest.raises(SpoolError, match="in use by another node"):
        Spool(tmp_path / "spool", keyring)
    spool.close()
    Spool(tmp_path / "spool", keyring).close()  # free again once closed


# -- a node killed with files in its spool --------------------------------------------------


def _stored(db_path) -> list[tuple[str, str]]:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("select sop_uid, storage_key from warehouse_imagerecord").fetchall()


def _wait_until(condition, timeout: float, what: str, process=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the node exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(0.05)  # polling interval of a bounded wait on another process


def _start_node(port: int, log_path, **env) -> subprocess.Popen:
    node = subprocess.Popen([*NCCID, "node", "--port", str(port)],
                            env={**os.environ, **env}, stdout=open(log_path, "a"),
                            stderr=subprocess.STDOUT)
    wait_for_port(port, timeout=60, process=node)
    return node


def _terminate(node: subprocess.Popen, log_path) -> None:
    """SIGTERM, and the node must exit cleanly within a minute (its stacks logged if not)."""
    node.send_signal(signal.SIGTERM)
    try:
        node.wait(timeout=60)
    except subprocess.TimeoutExpired:
        node.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to the log
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=2)  # a moment to write them (diagnostics only)
        node.kill()
        node.wait(timeout=30)
        raise AssertionError("the node did not stop on SIGTERM:\n"
                             + log_path.read_text()[-6000:]) from None
    assert node.returncode == 0, log_path.read_text()[-2000:]


def _storescu(port: int, folder) -> None:
    sent = subprocess.run([STORESCU, "-aet", "KILL_PACS", "-aec", "NCCID", "+sd", "+r",
                           "127.0.0.1", str(port), str(folder)],
                          env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr


@pytest.mark.dcmtk
def test_node_killed_with_spooled_files_stores_each_exactly_once_after_restart(
        nccid_home, tmp_path, person_factory):
    run = dict(check=True, capture_output=True, timeout=180)
    subprocess.run([*NCCID, "init"], **run)
    subprocess.run([*NCCID, "site", "add", "KILL", "--name", "Kill Test Hospital",
                    "--ae-title", "KILL_PACS"], **run)
    a, b = person_factory(60), person_factory(61)
    first = write_study(tmp_path / "first", a, count=8, rows=128, patient_id=a.nhs_number,
                        plant=False)
    second = write_study(tmp_path / "second", b, count=8, rows=128, patient_id=b.nhs_number,
                         plant=False)
    db_path, spool = nccid_home / "nccid.sqlite3", nccid_home / "spool"
    log_path = tmp_path / "node.log"

    # 1. Drain paused (the operator's switch): every acknowledged file is only in the spool.
    port = free_port()
    node = _start_node(port, log_path, NCCID_NODE_DRAIN="false")
    _storescu(port, tmp_path / "first")
    node.send_signal(signal.SIGKILL)
    node.wait(timeout=30)
    assert spool_backlog(spool).records == 8 and _stored(db_path) == []

    # 2. Restarted with the drain on, then killed as soon as the next study is acknowledged:
    #    the drain is somewhere in the first study, or the second, or done.
    port = free_port()
    node = _start_node(port, log_path)
    _storescu(port, tmp_path / "second")
    node.send_signal(signal.SIGKILL)
    node.wait(timeout=30)

    # 3. Restarted: whatever was left is replayed; each file stored exactly once.
    port = free_port()
    node = _start_node(port, log_path)
    try:
        _wait_until(lambda: spool_backlog(spool).records == 0, 120, "the spool drained", node)
    finally:
        _terminate(node, log_path)
    rows = _stored(db_path)
    keyring = load_keyring(nccid_home / "secret.key")  # the key 'nccid init' made there
    expected = {keyring.uid(original_sop(p)) for p in first + second}
    assert len(rows) == 16 and {uid for uid, _ in rows} == expected
    warehouse = nccid_home / "warehouse"
    assert all((warehouse / key).is_file() for _, key in rows)
    assert len(list(warehouse.rglob("*.dcm"))) == 16
    assert _segments(spool) == [] and not list(spool.glob("*.corrupt"))


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux: /proc/<pid>/task/*/children)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):
            found += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
    return found


@pytest.mark.dcmtk
def test_the_deidentification_process_killed_is_restarted_and_each_file_stored_once(
        nccid_home, tmp_path, person_factory):
    """`nccid node` de-identifies in a child process: killing it loses nothing and repeats
    nothing; the node restarts it and the batch it had is taken again from the spool."""
    run = dict(check=True, capture_output=True, timeout=180)
    subprocess.run([*NCCID, "init"], **run)
    subprocess.run([*NCCID, "site", "add", "KILL", "--name", "Kill Test Hospital",
                    "--ae-title", "KILL_PACS"], **run)
    person = person_factory(62)
    files = write_study(tmp_path / "study", person, count=12, rows=128,
                        patient_id=person.nhs_number, plant=False)
    db_path, spool = nccid_home / "nccid.sqlite3", nccid_home / "spool"
    log_path = tmp_path / "node.log"
    port = free_port()
    node = _start_node(port, log_path)
    try:
        _storescu(port, tmp_path / "study")
        _wait_until(lambda: _children(node.pid), 60, "the de-identification process", node)
        first = _children(node.pid)
        for child in first:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        _storescu(port, tmp_path / "study")  # sent again: duplicates, success for the sender
        _wait_until(lambda: spool_backlog(spool).records == 0, 120, "the spool drained", node)
        assert set(_children(node.pid)).isdisjoint(first)  # a new process took over
    finally:
        _terminate(node, log_path)
    keyring = load_keyring(nccid_home / "secret.key")
    rows = _stored(db_path)
    assert sorted(uid for uid, _ in rows) == sorted(keyring.uid(original_sop(p)) for p in files)
    assert len(list((nccid_home / "warehouse").rglob("*.dcm"))) == 12


def test_the_worker_answers_batches_in_flight_in_order_and_a_failed_one_costs_no_mixup(
        nccid_home, tmp_path, person_factory):
    """The drain keeps two batches in flight: their replies come back in the order sent. A
    batch the worker cannot read, with another in flight, stops the worker (the reply still
    due would answer the wrong question); what was sent again is stored once."""
    from nccid.imaging.node import WorkerGone, WorkerProcess
    from nccid.imaging.outcome import IngestStatus as S
    from nccid.imaging.spool import Record

    run = dict(check=True, capture_output=True, timeout=180)
    subprocess.run([*NCCID, "init"], **run)
    subprocess.run([*NCCID, "site", "add", "PIPE", "--name", "Pipeline Test Hospital",
                    "--ae-title", "PIPE_PACS"], **run)
    keyring = load_keyring(nccid_home / "secret.key")
    a, b = person_factory(63), person_factory(64)
    files = (write_study(tmp_path / "a", a, count=3, rows=64, patient_id=a.nhs_number,
                         plant=False)
             + write_study(tmp_path / "b", b, count=2, rows=64, patient_id=b.nhs_number,
                           plant=False))
    spool = Spool(tmp_path / "spool", keyring)
    for path in files:
        spool.append("PIPE", "node", path.read_bytes())
    one = spool.read_batch(max_records=3, sealed=True)
    two = spool.read_batch(max_records=3, sealed=True, after=one)
    unreadable = Record("", "", None, segment=999, offset=len(FILE_MAGIC), length=64)
    worker = WorkerProcess()
    try:
        worker.send_records(spool.directory, one.records)
        worker.send_records(spool.directory, two.records)
        with pytest.raises(RuntimeError):  # a question asked before the replies due
            worker.ingest_records(spool.directory, one.records)
        assert [(c, o.status) for c, o in worker.next_reply()] == [("PIPE", S.STORED)] * 3
        assert [(c, o.status) for c, o in worker.next_reply()] == [("PIPE", S.STORED)] * 2

        worker.send_records(spool.directory, [unreadable])
        worker.send_records(spool.directory, two.records)
        with pytest.raises(WorkerGone, match="FileNotFoundError"):
            worker.next_reply()
        with pytest.raises(WorkerGone):  # the second reply is gone with the process
            worker.next_reply()
        again = worker.ingest_records(spool.directory, two.records)
        assert [(c, o.status) for c, o in again] == [("PIPE", S.DUPLICATE)] * 2
    finally:
        worker.close()
        spool.close()
    rows = _stored(nccid_home / "nccid.sqlite3")
    assert sorted(uid for uid, _ in rows) == sorted(keyring.uid(original_sop(p)) for p in files)


class _OrderedWorker:
    """The worker process's pipe as the drain sees it: replies in the order sent, and a
    question asked outright only when no reply is due (the real process is tested above).
    The first reply to the first batch sent fails its first file for an internal reason."""

    def __init__(self) -> None:
        self.due: list[list] = []
        self.asked: list[str] = []
        self.failed_once = False

    def send_records(self, directory, records: list) -> None:
        self.due.append(records)

    def next_reply(self) -> list:
        records = self.due.pop(0)
        replies = [("PIPE", _STORED) for _ in records]
        if not self.failed_once:
            self.failed_once = True
            replies[0] = ("PIPE", _INTERNAL)
        self.asked.append(f"reply {len(records)}")
        return replies

    def ingest_records(self, directory, records: list) -> list:
        assert not self.due, "a question asked while replies were due"
        self.asked.append(f"retry {len(records)}")
        return [("PIPE", _STORED) for _ in records]

    def close(self) -> None:
        pass


_STORED = IngestOutcome(IngestStatus.STORED, "")
_INTERNAL = IngestOutcome(IngestStatus.REJECTED, "internal error (OperationalError)")


# The drain checks both databases answer, on connections it closes when old: real transactions.
@pytest.mark.django_db(databases=["default", "vault"], transaction=True)
def test_the_drain_keeps_two_batches_in_flight_releases_in_order_and_retries_one_at_a_time(
        tmp_path, keyring, monkeypatch):
    from nccid.imaging import node

    monkeypatch.setattr(node, "FIRST_BACKOFF", 0.0)
    monkeypatch.setattr(node, "BATCH_FILES", 2)
    spool = Spool(tmp_path / "spool", keyring)
    for n in range(5):
        spool.append("PIPE", "node", b"file %d" % n)
    worker = _OrderedWorker()
    drain = node.Drain(spool, worker)

    drain._step()  # the first batch sent, nothing waited for
    assert len(worker.due) == 1 and spool.backlog().records == 5
    drain._step()  # the second sent; the first's reply has a failure: both replies taken
    assert worker.asked == ["reply 2", "reply 2", "retry 1"]
    assert spool.backlog().records == 1  # both released, in order
    drain._step()  # the last record sent
    drain._step()  # nothing more to send: its reply taken
    assert worker.asked[-1] == "reply 1" and spool.backlog().records == 0
    assert drain._tallies["PIPE"] == {"stored": 5}
    spool.close()


def test_a_record_of_many_pieces_comes_back_whole(tmp_path, keyring):
    """Records are encrypted and written a piece at a time (1 MB): one spanning several
    pieces, and made of several buffers, reads back byte for byte."""
    spool = Spool(tmp_path / "spool", keyring)
    big = [bytes(range(256)) * 4096, b"", memoryview(bytes(range(255, -1, -1)) * 6000)]
    spool.append("RTEST", "node", big)
    spool.append("RTEST", "node", b"small")
    assert [bytes(r.data) for r in _drain_all(spool)] == [b"".join(big), b"small"]
    spool.close()


def test_an_append_killed_before_its_header_leaves_the_spool_as_it_was(tmp_path, keyring,
                                                                      monkeypatch):
    """The header is written last, over the END mark: a crash while the pieces are written
    leaves a spool whose every scan (a live backlog count too) stops before them."""
    from nccid.imaging import spool as spool_module

    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    spool.append("RTEST", "node", b"A" * 500)
    written = []
    real_write_all = spool_module.write_all

    def killed_at_the_header(fd, parts, offset=None):
        if parts and bytes(parts[0][:4]) == b"NCSR":
            raise KeyboardInterrupt  # the process dies here: nothing is tidied up
        written.append(real_write_all(fd, parts, offset))
        return written[-1]

    monkeypatch.setattr(spool_module, "write_all", killed_at_the_header)
    with pytest.raises(KeyboardInterrupt):
        spool.append("RTEST", "node", bytes(3 * 1024 * 1024))
    monkeypatch.setattr(spool_module, "write_all", real_write_all)
    assert sum(written) > 3 * 1024 * 1024  # the pieces, the tag and the END mark were written
    assert spool_backlog(folder).records == 1
    spool.close()
    again = Spool(folder, keyring)
    assert again.backlog().records == 1
    assert [bytes(r.data) for r in _drain_all(again)] == [b"A" * 500]
    again.close()


def test_a_file_refused_by_the_check_after_its_body_is_written_never_becomes_a_record(
        tmp_path, keyring):
    """``append(check=)``: the check runs once the body is on its way to the disk (the node
    checks a received file meanwhile); a refusal leaves no record, and the next append and a
    restart see only what was accepted."""
    folder = tmp_path / "spool"
    spool = Spool(folder, keyring)
    assert spool.append("RTEST", "node", b"A" * 500, check=lambda: None) is None
    segment = _segments(folder)[0]
    before = segment.stat().st_size
    seen = []

    def refuse() -> str:
        seen.append(segment.stat().st_size)  # the body is written when the check runs
        return "no SOP Instance UID"

    assert spool.append("RTEST", "node", b"B" * 4000, check=refuse) == "no SOP Instance UID"
    assert seen[0] > before + 4000
    assert spool.backlog().records == 1 and spool_backlog(folder).records == 1
    spool.append("RTEST", "node", b"C" * 300)
    spool.close()
    again = Spool(folder, keyring)  # a restart
    assert [bytes(r.data) for r in _drain_all(again)] == [b"A" * 500, b"C" * 300]
    again.close()


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 9])
def test_skipping_records_lands_on_the_record_that_many_on_across_segments(tmp_path, keyring,
                                                                         count):
    spool = Spool(tmp_path / "spool", keyring, segment_bytes=200)  # two records to a segment
    for n in range(7):
        spool.append("RTEST", "node", b"record %d" % n + bytes(40))
    first = spool.read_batch(1)
    after = spool.skip(count, after=first)
    assert after.records == []
    landed = spool.read_batch(1, after=after).records
    assert [r.data[:8] for r in landed] == ([b"record %d" % (1 + count)] if count < 6 else [])
    spool.close()
