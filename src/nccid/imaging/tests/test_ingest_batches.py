"""ingest_many(): a batch gives each file the outcome ingest() would, is durable as a whole,
and a failure of its durability step stores nothing that a retry would then store twice."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread

from nccid.config import get_settings
from nccid.imaging.intake import ingest, ingest_many
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse import storage
from nccid.warehouse.models import ImageRecord

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
S = IngestStatus


def _study(person, count: int, **kw) -> list[bytes]:
    return [to_bytes(synthetic_instance(person, modality="CT", instance=i, **kw))
            for i in range(1, count + 1)]


def test_each_file_of_a_mixed_batch_gets_its_own_outcome(site, keyring, person_factory):
    a, b, c = person_factory(61), person_factory(62), person_factory(63)
    a1, a2, a3 = _study(a, 3, patient_id=a.nhs_number)
    waiting = _study(b, 1, plant=False)[0]             # hospital number, no clinical record
    burned = synthetic_instance(c, patient_id=c.nhs_number)
    burned.BurnedInAnnotation = "YES"
    assert ingest(a1, site, "test").status is S.STORED

    batch = [a1, a2[:-700], a2, a3, a3, waiting, to_bytes(burned), b"not dicom"]
    outcomes = ingest_many(batch, site, "test")

    assert [o.status for o in outcomes] == [S.DUPLICATE, S.REJECTED, S.STORED, S.STORED,
                                            S.DUPLICATE, S.PENDING, S.HELD, S.REJECTED]
    assert "truncated" in outcomes[1].reason and "not a DICOM file" in outcomes[7].reason
    # The good copy of the truncated file was not taken for a repeat of it.
    assert outcomes[2].sop_uid == keyring.uid(str(dcmread(BytesIO(a2)).SOPInstanceUID))
    pseudonym = keyring.pseudonym(a.nhs_number)
    assert ImageRecord.objects.filter(pseudonym=pseudonym).count() == 3
    receipt = StudyReceipt.objects.get(site=site, patient=pseudonym)
    # The truncated copy was refused before its header was trusted: no receipt counts it.
    assert (receipt.instances, receipt.stored, receipt.rejected, receipt.status) == \
        (3, 3, 0, "waiting")
    assert receipt.bytes == sum(ImageRecord.objects.filter(pseudonym=pseudonym)
                                .values_list("size", flat=True))


@pytest.mark.parametrize("failing_sync", [1, 2], ids=["data-sync", "names-sync"])
def test_a_failed_durability_step_stores_nothing_and_the_retry_stores_once(
        site, keyring, person_factory, monkeypatch, failing_sync):
    person = person_factory(64)
    files = _study(person, 4, patient_id=person.nhs_number)
    real_sync = storage.sync_filesystem
    calls = []

    def disk_gone(path: str) -> None:
        calls.append(path)
        if len(calls) == failing_sync:
            raise OSError("the disk went away")
        real_sync(path)

    monkeypatch.setattr(storage, "sync_filesystem", disk_gone)
    failed = ingest_many(files, site, "test")
    monkeypatch.setattr(storage, "sync_filesystem", real_sync)

    assert len(calls) == failing_sync
    assert [o.status for o in failed] == [S.REJECTED] * 4
    assert all("internal error (OSError)" == o.reason for o in failed)
    assert not ImageRecord.objects.exists() and not StudyReceipt.objects.exists()
    pseudonym = keyring.pseudonym(person.nhs_number)
    assert not _files(pseudonym)  # no object published, no temporary left behind

    again = ingest_many(files, site, "test")
    assert [o.status for o in again] == [S.STORED] * 4
    assert ImageRecord.objects.count() == 4
    assert sorted(p.suffix for p in _files(pseudonym)) == [".dcm"] * 4 + [".json"] * 4
    assert StudyReceipt.objects.get(site=site).instances == 4


def _files(pseudonym: str) -> list[Path]:
    """Every file (temporaries included) in the patient's folders of the warehouse."""
    root = Path(get_settings().storage_url)
    return [p for folder in root.glob(f"*/*/{pseudonym}") for p in folder.rglob("*")
            if p.is_file()]


def test_the_node_worker_opens_sealed_spool_records_and_reports_one_failing_authentication(
        site, keyring, person_factory, tmp_path):
    from nccid.imaging.node import _ingest_records
    from nccid.imaging.spool import END, Spool

    person = person_factory(64)
    files = _study(person, 3, patient_id=person.nhs_number)
    spool = Spool(tmp_path / "spool", keyring)
    for data in files:
        spool.append(site.code, "node", data)
    segment = next((tmp_path / "spool").glob("segment-*.log"))
    raw = bytearray(segment.read_bytes())
    raw[-len(END) - 1] ^= 0xFF  # the third record altered on disk (before the END mark)
    segment.write_bytes(bytes(raw))
    batch = spool.read_batch(sealed=True)

    replies = _ingest_records(tmp_path / "spool", batch.records)

    assert [(code, o.status if o else None) for code, o in replies] == [
        (site.code, S.STORED), (site.code, S.STORED), ("", None)]
    assert ImageRecord.objects.count() == 2
    spool.close()


def test_a_long_run_freezes_what_exists_for_the_collector_and_restores_it_after():
    import gc

    from nccid.imaging.intake import long_run_collector

    before = gc.get_threshold()
    with long_run_collector(threshold=12_345):
        assert gc.get_threshold()[0] == 12_345 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_stored_waiting_and_held_instances_are_all_found_taken_in_one_query(
        site, keyring, person_factory, django_assert_num_queries):
    from nccid.imaging.intake import taken_uids

    a, b, c = person_factory(65), person_factory(66), person_factory(67)
    stored = _study(a, 1, patient_id=a.nhs_number)[0]
    waiting = _study(b, 1, plant=False)[0]
    burned = synthetic_instance(c, patient_id=c.nhs_number)
    burned.BurnedInAnnotation = "YES"
    outcomes = ingest_many([stored, waiting, to_bytes(burned)], site, "test")
    assert [o.status for o in outcomes] == [S.STORED, S.PENDING, S.HELD]
    taken = {o.sop_uid for o in outcomes}

    with django_assert_num_queries(1):
        found = taken_uids([*taken, keyring.uid("1.2.3.4.5.6.7.8.9")])
    assert found == taken


def test_batches_count_into_their_studies_receipts_keeping_held_and_clinical_status(
        site, keyring, person_factory):
    """The receipts of stored batches (one upsert per batch) follow derive_status: a study
    with a held instance stays held; one whose patient has a clinical record is stored."""
    from nccid.imaging.tests.test_linking_pending import _accept

    held_person, linked = person_factory(64), person_factory(65)
    first, second, third = _study(held_person, 3, patient_id=held_person.nhs_number)
    burned = dcmread(BytesIO(first))
    burned.BurnedInAnnotation = "YES"
    assert ingest(to_bytes(burned), site, "test").status is S.HELD
    receipt = StudyReceipt.objects.get(site=site, patient=keyring.pseudonym(held_person.nhs_number))
    began = receipt.first_received
    assert [o.status for o in ingest_many([second, third], site, "test")] == [S.STORED] * 2
    receipt.refresh_from_db()
    assert (receipt.instances, receipt.stored, receipt.held, receipt.status) == (3, 2, 1, "held")
    assert receipt.first_received == began and receipt.last_received >= began

    one, two, three = _study(linked, 3, patient_id=linked.nhs_number)
    assert ingest(one, site, "test").status is S.STORED
    _accept(site, keyring, linked)  # linking marks the stored study as having a record
    ingest_many([two, three], site, "test")
    pseudonym = keyring.pseudonym(linked.nhs_number)
    receipt = StudyReceipt.objects.get(site=site, patient=pseudonym)
    assert (receipt.instances, receipt.stored, receipt.status) == (3, 3, "stored")

    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind="positive", sha256="0" * 64)
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  digest="0" * 64, last_upload=upload)
    ingest_many(_study(linked, 2, patient_id=linked.nhs_number, study=2), site, "test")
    receipts = StudyReceipt.objects.filter(site=site, patient=pseudonym)
    assert sorted((r.instances, r.status) for r in receipts) == [(2, "stored"), (3, "stored")]
