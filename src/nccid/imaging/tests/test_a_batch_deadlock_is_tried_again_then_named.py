"""Importers of the same images in opposite orders deadlocked in PostgreSQL, and the one rolled
back stopped with "the database does not answer" while the server was running. A batch's
receipts are now counted in study order (as its image rows go in by SOP UID), a deadlock
left is tried again with the whole batch transaction (its images and receipts counted
once), and one that persists is named for what it is."""

from __future__ import annotations

from io import BytesIO

import psycopg.errors
import pytest
from django.db import OperationalError, connection
from pydicom import dcmread

from nccid.cli.tests.clirun import run_cli
from nccid.imaging.intake import ingest_many, outage_of
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import COMMIT_TRIES

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
DEADLOCK = "a deadlock with another process writing the same images"


def _upserts_receipts(sql: str) -> bool:
    return sql.lstrip().startswith(f"INSERT INTO {connection.ops.quote_name(StudyReceipt._meta.db_table)}")


class Deadlocks:
    """The receipts' upsert (the last statement of a batch's transaction, after its image rows)
    fails ``times`` times as PostgreSQL's deadlock victim does, then goes through."""

    def __init__(self, times: int) -> None:
        self.left, self.raised = times, 0

    def __call__(self, execute, sql, params, many, context):
        if _upserts_receipts(sql) and self.left:
            self.left -= 1
            self.raised += 1
            raise OperationalError("deadlock detected") from psycopg.errors.DeadlockDetected(
                "deadlock detected")
        return execute(sql, params, many, context)


def _studies(person, keyring, count: int = 3) -> list[bytes]:
    """Two files of each of ``count`` studies, the studies in descending de-identified UID."""
    files = [to_bytes(synthetic_instance(person, modality="CT", study=s, instance=i,
                                         patient_id=person.nhs_number))
             for s in range(1, count + 1) for i in (1, 2)]
    return sorted(files, reverse=True,
                  key=lambda f: keyring.uid(str(dcmread(BytesIO(f)).StudyInstanceUID)))


def test_a_batch_counts_its_receipts_in_study_order(site, keyring, person_factory):
    files = _studies(person_factory(71), keyring)
    seen = []

    def receipts(execute, sql, params, many, context):
        if _upserts_receipts(sql):
            seen.append([row[1] for row in params])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(receipts):
        outcomes = ingest_many(files, site, "test")
    assert {o.status for o in outcomes} == {IngestStatus.STORED}
    assert len(seen) == 1 and len(seen[0]) == 3
    assert seen[0] == sorted(seen[0])


def test_a_deadlock_is_tried_again_and_counted_once(site, keyring, person_factory):
    files = _studies(person_factory(72), keyring, count=2)
    deadlocks = Deadlocks(times=1)
    with connection.execute_wrapper(deadlocks):
        outcomes = ingest_many(files, site, "test")
    assert deadlocks.raised == 1
    assert [o.status for o in outcomes] == [IngestStatus.STORED] * len(files)
    assert ImageRecord.objects.count() == len(files)
    counts = StudyReceipt.objects.filter(site=site).values_list("instances", "stored")
    assert sorted(counts) == [(2, 2), (2, 2)]


def test_a_deadlock_that_persists_is_named_not_an_unanswering_database(
        site, keyring, person_factory, monkeypatch, tmp_path):
    person = person_factory(73)
    for n, data in enumerate(_studies(person, keyring, count=2)):
        (tmp_path / f"{n}.dcm").write_bytes(data)
    deadlocks = Deadlocks(times=COMMIT_TRIES * 10)
    with connection.execute_wrapper(deadlocks):
        stopped = run_cli(monkeypatch, "images", "import", "--site", site.code, str(tmp_path))
    assert deadlocks.raised == COMMIT_TRIES
    line = " ".join(stopped.err.split())
    assert stopped.code == 1, stopped.out + stopped.err
    assert f"error: the import stopped: {DEADLOCK} (DeadlockDetected" in line
    assert "does not answer" not in line and "run the same import again" in line
    assert not ImageRecord.objects.exists() and not StudyReceipt.objects.exists()

    again = run_cli(monkeypatch, "images", "import", "--site", site.code, str(tmp_path))
    assert again.code == 0, again.out + again.err
    assert ImageRecord.objects.count() == 4


def test_a_lost_connection_is_still_an_unanswering_database():
    lost = OperationalError("server closed the connection unexpectedly")
    assert "the database does not answer" in outage_of(lost)
    deadlock = OperationalError("deadlock detected")
    deadlock.__cause__ = psycopg.errors.SerializationFailure("could not serialize access")
    assert outage_of(deadlock).startswith(DEADLOCK)
