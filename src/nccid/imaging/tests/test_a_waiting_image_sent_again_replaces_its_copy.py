"""An image waiting for a link (its Patient ID failed the NHS check digit, and no sheet names
it as a hospital number yet) sent again by the same site is that site's correction: it takes
the waiting copy's place. Linked now (a valid NHS number, a hospital number a sheet has since
named), it is stored and the waiting copy (row and file) goes; still unlinkable, the new copy
waits instead (its hospital number, a fresh retention period). Counted once on the receipt
either way. Sent by another site, or once stored, it stays a duplicate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from nccid.clinical.signals import AcceptedRecord, records_accepted
from nccid.config import get_settings
from nccid.imaging.intake import ingest, ingest_many
from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

from .sheets import record_and_link

pytestmark = [pytest.mark.django_db(databases=["default", "vault"]),
              pytest.mark.usefixtures("pending_folder")]  # (its files are the test's own)


def _bad_check_digit(nhs_number: str) -> str:
    """The NHS number with its check digit wrong (a typo): taken for a hospital number."""
    return nhs_number[:-1] + str((int(nhs_number[-1]) + 1) % 10)


def _send(site, person, patient_id: str, instance: int = 1, **attributes):
    ds = synthetic_instance(person, instance=instance, plant=False, patient_id=patient_id)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ingest(to_bytes(ds), site, "test")


def _waiting(site, person, instance: int = 1) -> PendingImage:
    outcome = _send(site, person, _bad_check_digit(person.nhs_number), instance)
    assert outcome.status is IngestStatus.PENDING, outcome
    return PendingImage.objects.get(sop_uid=outcome.sop_uid)


def _counts(site) -> tuple[int, int, int, int]:
    receipt = StudyReceipt.objects.get(site=site)
    return receipt.instances, receipt.stored, receipt.pending, receipt.held


def _file(row: PendingImage):
    return get_settings().pending_dir / row.file_name


def test_a_waiting_image_sent_again_with_its_nhs_number_is_stored_once(site, keyring,
                                                                       person_factory):
    person = person_factory(141)
    old = _waiting(site, person)
    assert _file(old).exists()

    outcome = _send(site, person, person.nhs_number)
    assert (outcome.status, outcome.sop_uid) == (IngestStatus.STORED, old.sop_uid)
    assert ImageRecord.objects.get().pseudonym == keyring.pseudonym(person.nhs_number)
    assert not PendingImage.objects.exists()
    assert not _file(old).exists()
    receipt = StudyReceipt.objects.get(site=site)
    assert _counts(site) == (1, 1, 0, 0)
    assert (receipt.status, receipt.patient) == ("waiting", keyring.pseudonym(person.nhs_number))
    assert receipt.bytes == ImageRecord.objects.get().size  # (the waiting copy's taken back)

    again = _send(site, person, person.nhs_number)
    assert again.status is IngestStatus.DUPLICATE
    assert _counts(site) == (1, 1, 0, 0)


def test_a_waiting_image_sent_again_once_its_number_is_linked_is_stored(site, keyring,
                                                                        person_factory):
    """The hospital number a sheet has named since (its linker not run): the resend links."""
    person = person_factory(142)
    old = _send(site, person, person.hospital_number)
    assert old.status is IngestStatus.PENDING
    pseudonym, _, _ = record_and_link(site, keyring, person)

    assert _send(site, person, person.hospital_number).status is IngestStatus.STORED
    assert ImageRecord.objects.get().pseudonym == pseudonym
    assert not PendingImage.objects.exists()
    receipt = StudyReceipt.objects.get(site=site)
    assert _counts(site) == (1, 1, 0, 0)
    assert (receipt.status, receipt.patient) == ("stored", pseudonym)


def test_a_batch_of_resent_and_new_instances_counts_each_once(site, person_factory):
    person = person_factory(143)
    waiting = [_waiting(site, person, instance) for instance in (1, 2)]
    batch = [to_bytes(synthetic_instance(person, instance=i, plant=False,
                                         patient_id=person.nhs_number)) for i in (1, 2, 3)]
    outcomes = ingest_many(batch, site, "test")
    assert [o.status for o in outcomes] == [IngestStatus.STORED] * 3
    assert ImageRecord.objects.count() == 3
    assert not PendingImage.objects.exists()
    assert not [row for row in waiting if _file(row).exists()]
    assert _counts(site) == (3, 3, 0, 0)


def test_a_waiting_image_sent_again_still_unlinkable_waits_in_its_place(site, keyring,
                                                                        person_factory):
    person = person_factory(144)
    old = _waiting(site, person)
    PendingImage.objects.filter(pk=old.pk).update(expires_at=timezone.now() + timedelta(days=1))

    outcome = _send(site, person, person.hospital_number)
    assert outcome.status is IngestStatus.PENDING
    new = PendingImage.objects.get()
    hospital_hash = keyring.hospital_hash(site.code, person.hospital_number)
    assert (new.sop_uid, new.hospital_hash) == (old.sop_uid, hospital_hash)
    retention = timedelta(days=get_settings().pending_retention_days)
    assert new.expires_at > timezone.now() + retention - timedelta(hours=1)
    assert _file(new).exists() and not _file(old).exists()
    receipt = StudyReceipt.objects.get(site=site)
    assert _counts(site) == (1, 0, 1, 0)
    assert (receipt.status, receipt.patient) == ("pending", hospital_hash)

    # its new hospital number is the one a sheet links
    records_accepted.send(sender=None, site=site, upload_id=1, records=[AcceptedRecord(
        pseudonym=keyring.pseudonym(person.nhs_number), hospital_hash=hospital_hash,
        kind="positive", cleaned={})])
    assert ImageRecord.objects.get().sop_uid == old.sop_uid
    assert _counts(site) == (1, 1, 0, 0)
    assert not _file(new).exists()


def test_a_waiting_image_sent_again_and_held_is_held_in_its_place(site, person_factory):
    person = person_factory(145)
    old = _waiting(site, person)
    outcome = _send(site, person, person.nhs_number, BurnedInAnnotation="YES")
    assert outcome.status is IngestStatus.HELD
    assert HeldImage.objects.get().sop_uid == old.sop_uid
    assert not PendingImage.objects.exists() and not _file(old).exists()
    assert _counts(site) == (1, 0, 0, 1)


def test_an_image_waiting_for_another_site_stays_a_duplicate(site, other_site, person_factory):
    person = person_factory(146)
    old = _waiting(site, person)
    outcome = _send(other_site, person, person.nhs_number)
    assert (outcome.status, outcome.reason) == (IngestStatus.DUPLICATE, "already received")
    assert PendingImage.objects.get() == old and _file(old).exists()
    assert not ImageRecord.objects.exists()
    assert not StudyReceipt.objects.filter(site=other_site).exists()


def test_an_image_a_linker_is_storing_is_not_replaced(site, person_factory):
    """A claimed waiting copy is the linker's: a resend that cannot link is a duplicate."""
    person = person_factory(147)
    old = _waiting(site, person)
    PendingImage.objects.filter(pk=old.pk).update(claimed_at=timezone.now())
    outcome = _send(site, person, person.hospital_number)
    assert outcome.status is IngestStatus.DUPLICATE
    assert PendingImage.objects.get().file_name == old.file_name and _file(old).exists()
    assert [p.name for p in get_settings().pending_dir.glob("*.pending")] == [old.file_name]
    assert _counts(site) == (1, 0, 1, 0)


def test_an_import_of_the_corrected_study_stores_what_waited(site, tmp_path, person_factory):
    from nccid.imaging.importer import collect, import_sources

    from .conftest import write_study

    person = person_factory(148)
    write_study(tmp_path / "typo", person, count=2, plant=False,
                patient_id=_bad_check_digit(person.nhs_number))
    write_study(tmp_path / "fixed", person, count=2, plant=False, patient_id=person.nhs_number)
    first = import_sources(collect([tmp_path / "typo"])[0], site)
    assert first.counts["pending"] == 2
    again = import_sources(collect([tmp_path / "fixed"])[0], site)
    assert (again.counts["stored"], again.counts["duplicate"]) == (2, 0)
    assert not PendingImage.objects.exists()
    assert not list(get_settings().pending_dir.glob("*.pending"))
    assert _counts(site) == (2, 2, 0, 0)
