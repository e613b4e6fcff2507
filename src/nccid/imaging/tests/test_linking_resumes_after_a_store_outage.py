"""Waiting images whose clinical record arrived while the object store refused writes stay
waiting, and are linked by the next linking pass once it works again; the purge of expired
waiting images keeps them meanwhile (it deletes only images with no record, saying so)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from nccid.clinical.signals import AcceptedRecord, records_accepted
from nccid.imaging.intake import ingest
from nccid.imaging.models import PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.pending import purge_expired
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.layout import SETS
from nccid.warehouse.models import ImageRecord

from .sheets import record_and_link

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _pending(site, person, study: int, count: int) -> list[str]:
    outcomes = [ingest(to_bytes(synthetic_instance(person, study=study, instance=i, plant=False)),
                       site, "test") for i in range(1, count + 1)]
    assert [o.status for o in outcomes] == [IngestStatus.PENDING] * count
    return [o.sop_uid for o in outcomes]


def _sheet_confirmed(site, keyring, person) -> None:
    """The patient's record and link committed, then the upload's receivers, as a sheet does."""
    pseudonym, hospital_hash, upload = record_and_link(site, keyring, person)
    records_accepted.send(sender=None, site=site, upload_id=upload.pk, records=[AcceptedRecord(
        pseudonym=pseudonym, hospital_hash=hospital_hash, kind="positive", cleaned={})])


def _refuse_writes(warehouse) -> None:
    """Each set's folder replaced by a file: every image write fails (for root too)."""
    for name in SETS:
        warehouse.local_path(name).write_bytes(b"")


def _accept_writes(warehouse) -> None:
    for name in SETS:
        warehouse.local_path(name).unlink()


def test_images_waiting_while_the_store_was_down_are_linked_not_purged(
        site, keyring, person_factory, local_warehouse):
    person, loner = person_factory(51), person_factory(52)
    sops = _pending(site, person, study=1, count=3)
    _pending(site, loner, study=2, count=1)
    _refuse_writes(local_warehouse)
    _sheet_confirmed(site, keyring, person)
    assert set(PendingImage.objects.values_list("sop_uid", flat=True)) > set(sops)
    assert not ImageRecord.objects.exists()

    PendingImage.objects.update(expires_at=timezone.now() - timedelta(days=1))
    assert purge_expired() == 1  # the loner's only: the store still refuses the others
    assert set(PendingImage.objects.values_list("sop_uid", flat=True)) == set(sops)
    loner_receipt = StudyReceipt.objects.get(rejected=1)
    assert "no clinical record arrived" in loner_receipt.problem

    _accept_writes(local_warehouse)
    assert purge_expired() == 0
    assert not PendingImage.objects.exists()
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == set(sops)
    receipt = StudyReceipt.objects.get(stored__gt=0)
    assert (receipt.stored, receipt.pending, receipt.status) == (3, 0, "stored")
    assert receipt.patient == keyring.pseudonym(person.nhs_number)


def test_the_link_pass_links_what_the_outage_left_waiting(site, keyring, person_factory,
                                                          local_warehouse):
    from nccid.imaging.linking import link_known

    person = person_factory(53)
    sops = _pending(site, person, study=1, count=2)
    _refuse_writes(local_warehouse)
    _sheet_confirmed(site, keyring, person)
    assert link_known().linked == 0  # still refused: nothing lost, nothing linked
    assert PendingImage.objects.count() == 2
    _accept_writes(local_warehouse)
    assert link_known().linked == 2
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == set(sops)
    assert StudyReceipt.objects.get().status == "stored"
