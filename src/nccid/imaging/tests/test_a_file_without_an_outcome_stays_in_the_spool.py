"""Every file the node acknowledged gets an outcome or stays in the spool: a file intake gave no
outcome (a bug) is an internal error, retried, never a crash of the drain nor a file let go;
and a worker process that cannot even start (its settings, a database it cannot open, a
broken install) is not a record's fault: nothing is quarantined for it, everything waits."""

from __future__ import annotations

import contextlib
import logging

import pytest

from nccid.imaging import intake, node
from nccid.imaging.outcome import IngestOutcome, IngestStatus
from nccid.imaging.spool import Spool, quarantined
from nccid.synthetic.dicom import synthetic_instance, to_bytes

# The drain checks both databases answer on its own connections, as the node's thread does.
pytestmark = pytest.mark.django_db(databases=["default", "vault"], transaction=True)


def test_intake_gives_a_file_its_pipeline_forgot_an_internal_error_not_none(
        site, person_factory, monkeypatch, caplog):
    person = person_factory(81)
    files = [to_bytes(synthetic_instance(person, modality="CT", instance=n,
                                         patient_id=person.nhs_number)) for n in (1, 2)]
    # A bug: the batch's files are never parsed, de-identified, stored or kept.
    monkeypatch.setattr(intake, "_prepare", lambda prepared: None)
    with caplog.at_level(logging.ERROR, logger="nccid.imaging.intake"):
        outcomes = intake.ingest_many(files, site, "node")

    assert outcomes == [IngestOutcome(IngestStatus.REJECTED, "internal error (no outcome)")] * 2
    assert sum("no outcome" in m for m in caplog.messages) == 2


def test_the_drain_keeps_a_file_intake_gave_no_outcome_and_stores_it_once_it_does(
        site, keyring, monkeypatch, tmp_path, caplog):
    spool = Spool(tmp_path / "spool", keyring)
    for data in (b"first", b"forgotten", b"last"):
        spool.append(site.code, "node", data)
    stored: list[bytes] = []
    forgotten = [2]  # intake leaves this file without an outcome twice

    def ingest_many(items, site, source):  # intake in this process, as the drain calls it
        outcomes = []
        for data in items:
            if data == b"forgotten" and forgotten[0]:
                forgotten[0] -= 1
                outcomes.append(None)
            else:
                stored.append(data)
                outcomes.append(IngestOutcome(IngestStatus.STORED, ""))
        return outcomes

    monkeypatch.setattr(intake, "ingest_many", ingest_many)
    drain = node.Drain(spool)
    pauses: list[int] = []

    def pause(seconds: float) -> bool:  # the drain's backoff before a retry
        pauses.append(spool.backlog().records)
        return False

    monkeypatch.setattr(drain._stop, "wait", pause)
    with caplog.at_level(logging.WARNING, logger="nccid.imaging.node"):
        drain._step()  # raised AttributeError on the None, every time

    assert pauses == [3, 3]  # nothing released while a file had no outcome
    assert spool.backlog().records == 0
    assert stored == [b"first", b"last", b"forgotten"]  # each once
    assert drain._tallies[site.code] == {"stored": 3}
    assert sum("gave 1 of" in m and "no outcome" in m for m in caplog.messages) == 2
    assert quarantined(spool.directory) == []
    spool.close()


def test_a_worker_process_that_cannot_start_costs_no_file(
        nccid_home, site, keyring, monkeypatch, tmp_path, caplog):
    # The child reads this (never initialised) home, so its setup fails before any batch; the
    # node's own databases answer, as when a lock, a setting or a broken install stops only it.
    spool = Spool(tmp_path / "spool", keyring)
    for n in range(2):
        spool.append(site.code, "node", b"file %d" % n)
    worker = node.WorkerProcess()
    drain = node.Drain(spool, worker)
    pauses: list[float] = []

    def pause(seconds: float) -> bool:
        pauses.append(seconds)
        return False

    monkeypatch.setattr(drain._stop, "wait", pause)
    try:
        with caplog.at_level(logging.WARNING, logger="nccid.imaging.node"):
            for _ in range(3 * node.WORKER_DEATHS):  # enough deaths to quarantine the first
                with contextlib.suppress(node.WorkerGone):
                    drain._step()
    finally:
        worker.close()

    assert quarantined(spool.directory) == []
    assert spool.backlog().records == 2
    assert drain._one_at_a_time == 0  # no death counted against the records
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    # Why, as the command line would say it (the message, never a patient's value).
    assert len(caplog.messages) == len(pauses)
    assert all("could not start (the database in database_url" in m and "does not exist" in m
               and "every received instance is kept in the spool" in m for m in caplog.messages)
    spool.close()
