"""The node's drain never gives up a file it acknowledged: a file that could not be stored for
an internal reason (the warehouse full or unreachable) stays in the spool, with everything
after it, until storing works again; and one file the worker process cannot survive is
quarantined for an operator instead of holding up every site's files."""

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

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

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

    def full_for_four_attempts(path: str) -> None:
        if len(seen_while_full) < 4:  # the disk is full: no batch can be made durable
            seen_while_full.append((spool.backlog().records, spool.position))
            raise OSError(28, "No space left on device")
        real_sync(path)

    monkeypatch.setattr(storage, "sync_filesystem", full_for_four_attempts)
    monkeypatch.setattr(node, "FIRST_BACKOFF", 0.0)
    drain = node.Drain(spool)  # intake in this process: the real store, failing
    start = spool.position
    with caplog.at_level(logging.WARNING, logger="nccid.imaging.node"):
        drain._step()

    assert seen_while_full == [(3, start)] * 4  # nothing released while storing failed
    backoffs = [r.getMessage() for r in caplog.records if "internal reason" in r.getMessage()]
    assert len(backoffs) == 4 and all("kept in the spool" in m for m in backoffs)
    assert not any(s in m for m in backoffs
                   for s in (person.nhs_number, person.family_name, person.given_name))
    assert spool.backlog().records == 0
    assert drain._tallies[site.code] == {"stored": 3}
    assert ImageRecord.objects.count() == 3
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.instances, receipt.stored, receipt.rejected) == (3, 3, 0)
    spool.close()


class _StorageDownWorker:
    """The worker process's pipe as the drain sees it (replies in the order sent): every
    file fails for an internal reason while ``down`` is set, and the drain's pause before a
    retry is what brings storage back after ``pauses_until_up`` of them."""

    def __init__(self, pauses_until_up: int) -> None:
        self.due: list[list] = []
        self.down = True
        self.stored: list[tuple] = []
        self.pauses_until_up = pauses_until_up

    def send_records(self, directory, records: list) -> None:
        self.due.append(records)

    def next_reply(self) -> list:
        return self._answer(self.due.pop(0))

    def ingest_records(self, directory, records: list) -> list:
        assert not self.due, "a question asked while replies were due"
        return self._answer(records)

    def _answer(self, records: list) -> list:
        if self.down:
            return [("PIPE", _INTERNAL) for _ in records]
        self.stored += [(r.segment, r.offset) for r in records]
        return [("PIPE", _STORED) for _ in records]

    def close(self) -> None:
        pass


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


class _DyingWorker:
    """As the real WorkerProcess behaves when its child is killed (OOM, a native crash)
    reading the record ``b"poison"``: the batches in hand get no reply."""

    def __init__(self, spool: Spool) -> None:
        self.spool, self.due, self.deaths, self.stored = spool, [], 0, []

    def send_records(self, directory, records: list) -> None:
        self.due.append(records)

    def next_reply(self) -> list:
        return self._answer(self.due.pop(0))

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

    def close(self) -> None:
        pass


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
