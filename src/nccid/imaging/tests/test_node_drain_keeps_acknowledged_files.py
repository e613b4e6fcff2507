"""The node's drain never gives up a file it acknowledged: a file that could not be stored for
an internal reason (the warehouse full or unreachable) stays in the spool, with everything
after it, until storing works again; and one file the worker process cannot survive is
quarantined for an operator instead of holding up every site's files, as is one that intake
fails on, alone, for an internal reason while the file after it goes in."""

from __future__ import annotations

import logging
import stat

import pytest

from nccid.imaging import node
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestOutcome, IngestStatus
from nccid.imaging.spool import Spool, open_quarantined, open_record, quarantined
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse import storage
from nccid.warehouse.models import ImageRecord

# The drain closes a connection it finds old and checks both databases answer, as the node's
# thread must; in a test's own transaction on PostgreSQL that would close the test's connection
# (and the check would fail on it), so these run in real transactions.
pytestmark = pytest.mark.django_db(databases=["default", "vault"], transaction=True)

_STORED = IngestOutcome(IngestStatus.STORED, "")
_INTERNAL = IngestOutcome(IngestStatus.REJECTED, "internal error (OSError)")


def _study(person, count: int) -> list[bytes]:
    return [to_bytes(synthetic_instance(person, modality="CT", instance=i,
                                        patient_id=person.nhs_number))
            for i in range(1, count + 1)]


def test_a_full_warehouse_keeps_every_file_in_the_spool_until_it_stores_each_once(
        site, keyring, person_factory, monkeypatch, tmp_path, caplog):
    person = person_factory(71)
    files = _study(person, 3)
    spool = Spool(tmp_path / "spool", keyring)
    for data in files:
        spool.append(site.code, "node", data)
    real_sync = storage.sync_filesystem
    seen_while_full: list[tuple] = []

    def full_for_eight_attempts(path: str) -> None:
        if len(seen_while_full) < 8:  # the disk is full: no batch can be made durable
            seen_while_full.append((spool.backlog().records, spool.position))
            raise OSError(28, "No space left on device")
        real_sync(path)

    monkeypatch.setattr(storage, "sync_filesystem", full_for_eight_attempts)
    monkeypatch.setattr(node, "FIRST_BACKOFF", 0.0)
    drain = node.Drain(spool)  # intake in this process: the real store, failing
    start = spool.position
    with caplog.at_level(logging.WARNING, logger="nccid.imaging.node"):
        for _ in range(10):  # what Drain._run does
            drain._step()
            if not spool.backlog().records:
                break

    # The batch and its 3 retries, twice: intake names the outage (storage_url), so no file
    # is tried alone to tell it from one. Nothing released while storing failed.
    assert seen_while_full == [(3, start)] * 8
    pauses = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(pauses) == 8 and all("kept in the spool" in m and "check storage_url" in m
                                    for m in pauses)
    assert not any(s in r.getMessage() for r in caplog.records
                   for s in (person.nhs_number, person.family_name, person.given_name))
    assert spool.backlog().records == 0
    assert quarantined(spool.directory) == []
    assert drain._tallies[site.code] == {"stored": 3}
    assert ImageRecord.objects.count() == 3
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.instances, receipt.stored, receipt.rejected) == (3, 3, 0)
    spool.close()


class _FakeWorker:
    """The worker process's pipe as the drain sees it: replies in the order sent, each made
    by ``_answer``."""

    due: list[list]

    def send_records(self, directory, records: list) -> None:
        self.due.append(records)

    def next_reply(self) -> list:
        return self._answer(self.due.pop(0))

    def ingest_records(self, directory, records: list) -> list:
        assert not self.due, "a question asked while replies were due"
        return self._answer(records)

    def close(self) -> None:
        pass


class _StorageDownWorker(_FakeWorker):
    """The worker process's pipe as the drain sees it (replies in the order sent): every
    file fails for an internal reason while ``down`` is set, and the drain's pause before a
    retry is what brings storage back after ``pauses_until_up`` of them."""

    def __init__(self, pauses_until_up: int) -> None:
        self.due: list[list] = []
        self.down = True
        self.stored: list[tuple] = []
        self.pauses_until_up = pauses_until_up

    def _answer(self, records: list) -> list:
        if self.down:
            return [("PIPE", _INTERNAL) for _ in records]
        self.stored += [(r.segment, r.offset) for r in records]
        return [("PIPE", _STORED) for _ in records]


def test_records_failing_in_the_worker_stay_in_order_until_storage_is_back(
        db, tmp_path, keyring, monkeypatch, caplog):
    monkeypatch.setattr(node, "BATCH_FILES", 2)
    spool = Spool(tmp_path / "spool", keyring)
    for n in range(5):
        spool.append("PIPE", "node", b"file %d" % n)
    worker = _StorageDownWorker(pauses_until_up=3)
    drain = node.Drain(spool, worker)
    backlog_at_pauses = []

    def pause(seconds: float) -> bool:  # the drain's backoff: storage comes back after three
        backlog_at_pauses.append(spool.backlog().records)
        worker.pauses_until_up -= 1
        worker.down = worker.pauses_until_up > 0
        return False

    monkeypatch.setattr(drain._stop, "wait", pause)
    with caplog.at_level(logging.WARNING, logger="nccid.imaging.node"):
        for _ in range(10):
            drain._step()
            if not spool.backlog().records:
                break

    # Nothing released while storage was down; the second batch, answered while it was
    # down too, is retried once the first is released.
    assert backlog_at_pauses == [5, 5, 5, 3]
    assert all(m.startswith("site PIPE: 2 instance(s) could not be stored")
               for m in caplog.messages)  # the operator sees whose files wait
    assert spool.backlog().records == 0
    assert drain._tallies["PIPE"] == {"stored": 5}
    assert len(worker.stored) == len(set(worker.stored)) == 5  # each once, none given up
    spool.close()


class _DyingWorker(_FakeWorker):
    """As the real WorkerProcess behaves when its child is killed (OOM, a native crash)
    reading the record ``b"poison"``: the batches in hand get no reply."""

    def __init__(self, spool: Spool) -> None:
        self.spool, self.due, self.deaths, self.stored = spool, [], 0, []

    def ingest_records(self, directory, records: list) -> list:
        return self._answer(records)

    def _answer(self, records: list) -> list:
        opened = [open_record(self.spool.directory, self.spool._keyring, r) for r in records]
        if any(data == b"poison" for _, _, data in opened):
            self.due.clear()
            self.deaths += 1
            raise node.WorkerGone("the de-identification process ended (EOFError)")
        self.stored += [data for _, _, data in opened]
        return [(code, _STORED) for code, _, _ in opened]


def test_a_file_that_kills_the_worker_is_quarantined_and_every_other_file_drains(
        tmp_path, keyring, site, other_site, caplog):
    spool = Spool(tmp_path / "spool", keyring)
    spool.append(site.code, "node", b"file before")
    spool.append(site.code, "node", b"poison")
    for n in range(40):  # later files, of another site
        spool.append(other_site.code, "node", b"file %d" % n)
    worker = _DyingWorker(spool)
    drain = node.Drain(spool, worker)
    with caplog.at_level(logging.ERROR, logger="nccid.imaging.node"):
        for _ in range(200):  # what Drain._run does, without its pauses between tries
            try:
                drain._step()
            except node.WorkerGone:
                pass
            if not spool.backlog().records:
                break

    assert spool.backlog().records == 0
    assert sorted(worker.stored) == sorted([b"file before"] + [b"file %d" % n
                                                                for n in range(40)])
    # Tried as a batch, then alone, each WORKER_DEATHS times: then set aside.
    assert worker.deaths == 2 * node.WORKER_DEATHS
    [kept] = quarantined(spool.directory)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert b"poison" not in kept.read_bytes()  # still encrypted, as in the spool
    assert open_quarantined(keyring, kept) == (site.code, "node", b"poison")
    assert drain._tallies[site.code]["quarantined"] == 1
    assert any("moved to" in r.getMessage() and site.code in r.getMessage()
               for r in caplog.records)
    receipt = StudyReceipt.objects.get(site=site, study_uid=node.QUARANTINED_STUDY)
    assert (receipt.instances, receipt.rejected) == (1, 1)
    assert "kept for an operator" in receipt.problem
    spool.close()


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    """The installation's spool folder, for the commands run here."""
    import dataclasses

    from nccid import config

    settings = dataclasses.replace(config.get_settings(), spool_dir=tmp_path / "spool")
    monkeypatch.setattr(config, "get_settings", lambda: settings)
    return tmp_path / "spool"


def _images_quarantine(*args: str):
    from typer.testing import CliRunner

    from nccid.cli.main import typer_app

    return CliRunner().invoke(typer_app, ["images", "quarantine", *args])


def test_an_operator_lists_quarantined_files_and_puts_them_back_with_the_node_stopped(
        spool_dir, keyring, site, monkeypatch):
    from nccid.cli.common import console

    monkeypatch.setattr(console, "width", 200)
    assert "No received images are quarantined" in _images_quarantine().output
    spool = Spool(spool_dir, keyring)
    spool.append(site.code, "node", b"poison")
    batch = spool.read_batch(1, sealed=True)
    spool.quarantine(batch.records[0])
    spool.release(batch)

    listed = _images_quarantine()
    [kept] = quarantined(spool_dir)
    assert listed.exit_code == 0 and kept.name in listed.output and site.code in listed.output
    refused = _images_quarantine("--retry")  # the node (this spool) still runs
    assert refused.exit_code != 0 and "stop the node first" in str(refused.exception)
    assert quarantined(spool_dir) == [kept]
    spool.close()

    retried = _images_quarantine("--retry")
    assert retried.exit_code == 0 and "1 image(s) put back" in retried.output
    assert quarantined(spool_dir) == []
    spool = Spool(spool_dir, keyring)
    [record] = spool.read_batch(5).records
    assert (record.site_code, record.source, record.data) == (site.code, "node", b"poison")
    spool.close()


def test_a_file_intake_always_fails_on_is_quarantined_once_a_later_file_goes_in(
        site, other_site, keyring, person_factory, monkeypatch, tmp_path, caplog):
    from nccid.imaging import intake

    first, second = person_factory(72), person_factory(73)
    files = [(site, first, n) for n in (1, 2, 3)] + [(other_site, second, n) for n in (1, 2, 3)]
    poison = (first.nhs_number, 2)
    spool = Spool(tmp_path / "spool", keyring)
    for where, person, n in files:
        spool.append(where.code, "node", _study(person, 3)[n - 1])
    real_identify = intake.identify
    identified: list[tuple] = []

    def identify_failing_on_one_file(ds, *args, **kwargs):  # a bug in intake, for one file
        if (str(ds.PatientID), int(ds.InstanceNumber)) == poison:
            raise TypeError("a bug that raises for this file only")
        patient = real_identify(ds, *args, **kwargs)
        identified.append((str(ds.PatientID), int(ds.InstanceNumber)))
        return patient

    monkeypatch.setattr(intake, "identify", identify_failing_on_one_file)
    monkeypatch.setattr(node, "FIRST_BACKOFF", 0.0)
    monkeypatch.setattr(node, "BATCH_FILES", 2)
    drain = node.Drain(spool)
    with caplog.at_level(logging.WARNING, logger="nccid.imaging.node"):
        for _ in range(20):  # what Drain._run does
            drain._step()
            if not spool.backlog().records:
                break

    assert spool.backlog().records == 0
    wanted = [(p.nhs_number, n) for _, p, n in files if (p.nhs_number, n) != poison]
    assert identified == wanted  # each other file taken in once, in the spool's order
    assert ImageRecord.objects.count() == 5
    [kept] = quarantined(spool.directory)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    code, source, data = open_quarantined(keyring, kept)
    assert (code, source, data) == (site.code, "node", _study(first, 3)[1])
    assert drain._tallies[site.code]["quarantined"] == 1
    [moved] = [r.getMessage() for r in caplog.records if "moved to" in r.getMessage()]
    assert site.code in moved and "internal error (TypeError)" in moved
    assert not any(s in r.getMessage() for r in caplog.records for p in (first, second)
                   for s in (p.nhs_number, p.family_name, p.given_name))
    receipt = StudyReceipt.objects.get(site=site, study_uid=node.QUARANTINED_STUDY)
    assert (receipt.instances, receipt.rejected) == (1, 1)
    assert receipt.problem.startswith("could not be processed (internal error): kept for an "
                                      "operator")
    spool.close()


class _PoisonWorker(_FakeWorker):
    """The worker process's pipe as the drain sees it: intake fails for an internal reason on
    the record ``b"poison"`` every time, and on every record while ``down`` is set; it stores
    each other file once (a file stored already comes back DUPLICATE, as intake's do)."""

    def __init__(self, spool: Spool, down: bool = False) -> None:
        self.spool, self.due, self.down, self.stored = spool, [], down, []

    def _answer(self, records: list) -> list:
        replies = []
        for record in records:
            code, _, data = open_record(self.spool.directory, self.spool._keyring, record)
            if self.down or data == b"poison":
                replies.append((code, _INTERNAL))
            elif data in self.stored:
                replies.append((code, IngestOutcome(IngestStatus.DUPLICATE, "already stored")))
            else:
                self.stored.append(data)
                replies.append((code, _STORED))
        return replies


def _drain_past_poison(spool: Spool, site, other_site, poisoned: int, steps: int):
    """A file, ``poisoned`` poison records of ``site``, then 40 files of ``other_site`` (two
    batches in flight, and more), drained with a ``_PoisonWorker``: (worker, drain, the 40)."""
    spool.append(site.code, "node", b"file before")
    for _ in range(poisoned):
        spool.append(site.code, "node", b"poison")
    later = [b"file %d" % n for n in range(40)]
    for data in later:
        spool.append(other_site.code, "node", data)
    worker = _PoisonWorker(spool)
    drain = node.Drain(spool, worker)
    for _ in range(steps):  # what Drain._run does
        drain._step()
        if not spool.backlog().records:
            break
    return worker, drain, later


def test_a_record_the_worker_always_fails_on_is_quarantined_and_the_rest_drains_in_order(
        tmp_path, keyring, site, other_site, monkeypatch):
    monkeypatch.setattr(node, "FIRST_BACKOFF", 0.0)
    spool = Spool(tmp_path / "spool", keyring)
    worker, drain, later = _drain_past_poison(spool, site, other_site, 1, steps=100)

    assert spool.backlog().records == 0
    assert worker.stored == [b"file before", *later]  # each once, in order
    [kept] = quarantined(spool.directory)
    assert open_quarantined(keyring, kept) == (site.code, "node", b"poison")
    # The files stored with the two batches in flight are taken again one at a time: intake
    # answers that they are stored already.
    assert drain._tallies[site.code] == {"duplicate": 1, "quarantined": 1}
    assert drain._tallies[other_site.code] == {"duplicate": 40}
    spool.close()


def test_files_in_a_row_the_worker_always_fails_on_are_each_quarantined_and_the_rest_drains(
        tmp_path, keyring, site, other_site, monkeypatch):
    """One fault often trips every file of a study: the next file failing too is not taken
    for an outage when a file further on goes in."""
    monkeypatch.setattr(node, "FIRST_BACKOFF", 0.0)
    spool = Spool(tmp_path / "spool", keyring)
    worker, drain, later = _drain_past_poison(spool, site, other_site, 6, steps=200)

    assert spool.backlog().records == 0
    assert sorted(worker.stored) == sorted([b"file before", *later])  # each stored once
    kept = quarantined(spool.directory)
    assert [open_quarantined(keyring, k) for k in kept] == [(site.code, "node", b"poison")] * 6
    assert drain._tallies[site.code]["quarantined"] == 6
    spool.close()


@pytest.mark.parametrize("record_bytes", [64, 8 * 1024])
def test_later_files_are_tried_up_to_1024_on_whatever_their_size(
        tmp_path, keyring, site, monkeypatch, record_bytes):
    """Records of 64 B and of 8 KB against batches of 32 KB: as CT slices and radiographs
    against the real 32 MB, scaled down 1024 times."""
    monkeypatch.setattr(node, "BATCH_BYTES", 32 * 1024)
    spool = Spool(tmp_path / "spool", keyring)
    for n in range(1200):
        spool.append(site.code, "node", n.to_bytes(4, "big") + bytes(record_bytes - 4))
    head = spool.read_batch(1, node.BATCH_BYTES)
    drain = node.Drain(spool)
    tried: list[int] = []

    def failing_alone(batch) -> bool:
        tried.append(int.from_bytes(batch.records[0].data[:4], "big"))
        raise node._StillFailing(site.code, "internal error (TypeError)")

    monkeypatch.setattr(drain, "_process", failing_alone)
    assert drain._later_one_going_in(spool.read_batch(1, node.BATCH_BYTES, after=head)) is None
    assert tried == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    spool.close()


def test_an_outage_longer_than_the_retries_quarantines_nothing_and_stores_each_file_once(
        tmp_path, keyring, site, monkeypatch):
    monkeypatch.setattr(node, "BATCH_FILES", 2)
    spool = Spool(tmp_path / "spool", keyring)
    files = [b"file %d" % n for n in range(5)]
    for data in files:
        spool.append(site.code, "node", data)
    worker = _PoisonWorker(spool, down=True)
    drain = node.Drain(spool, worker)
    pauses: list[tuple] = []

    def pause(seconds: float) -> bool:  # the drain's backoff: storage is back after eight
        pauses.append((spool.backlog().records, seconds))
        worker.down = len(pauses) < 8
        return False

    monkeypatch.setattr(drain._stop, "wait", pause)
    for _ in range(30):
        drain._step()
        if not spool.backlog().records:
            break

    # Nothing released during the outage; the pauses keep growing to the longest.
    assert [left for left, _ in pauses] == [5] * 8
    assert [seconds for _, seconds in pauses] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert quarantined(spool.directory) == []
    assert worker.stored == files
    assert drain._tallies[site.code] == {"stored": 5}
    spool.close()


def test_a_failing_file_with_none_after_it_waits_until_a_later_file_tells_it_from_an_outage(
        tmp_path, keyring, site, monkeypatch):
    spool = Spool(tmp_path / "spool", keyring)
    spool.append(site.code, "node", b"poison")
    worker = _PoisonWorker(spool)
    drain = node.Drain(spool, worker)
    pauses: list[int] = []

    def pause(seconds: float) -> bool:
        pauses.append(spool.backlog().records)
        return False

    monkeypatch.setattr(drain._stop, "wait", pause)
    for _ in range(10):
        drain._step()
        if len(pauses) == 8:  # the batch's 3, then one per try alone
            break

    assert pauses == [1] * 8  # never given up
    assert spool.backlog().records == 1 and quarantined(spool.directory) == []
    spool.append(site.code, "node", b"file after")
    drain._step()

    assert spool.backlog().records == 0
    assert worker.stored == [b"file after"]
    [kept] = quarantined(spool.directory)
    assert open_quarantined(keyring, kept) == (site.code, "node", b"poison")
    spool.close()
