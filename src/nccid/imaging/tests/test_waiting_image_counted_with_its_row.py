"""A waiting (pending) or held image's row and its count on the study's receipt are one
transaction: a process that dies between them (a node worker killed) leaves neither, so the
replayed file is kept and counted once, never "already pending" and uncounted (a receipt of
15 instances with 15 pending, then pending -1 once the sheet linked them)."""

from __future__ import annotations

import pytest

from nccid.imaging import intake
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


class Died(Exception):
    """The process ending between the row and the count (its transaction never commits)."""


def _dies_counting(monkeypatch) -> None:
    def die(*args, **kwargs):
        raise Died

    monkeypatch.setattr(intake, "record_receipt", die)


def _replay(monkeypatch, data: bytes, site):
    monkeypatch.undo()
    return ingest(data, site, "test")


def test_a_pending_image_replayed_after_dying_mid_count_is_counted_once(
        site, monkeypatch, person_factory):
    data = to_bytes(synthetic_instance(person_factory(92), plant=False))  # hospital number only
    _dies_counting(monkeypatch)
    assert ingest(data, site, "test").status is IngestStatus.REJECTED  # (internal error)
    assert not PendingImage.objects.exists()

    assert _replay(monkeypatch, data, site).status is IngestStatus.PENDING
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.instances, receipt.pending, receipt.status) == (1, 1, "pending")
    assert PendingImage.objects.count() == 1


def test_a_held_image_replayed_after_dying_mid_count_is_counted_once(
        site, keyring, monkeypatch, person_factory):
    person = person_factory(93)
    ds = synthetic_instance(person, modality="CR", patient_id=person.nhs_number)
    ds.BurnedInAnnotation = "YES"
    data = to_bytes(ds)
    _dies_counting(monkeypatch)
    assert ingest(data, site, "test").status is IngestStatus.REJECTED
    assert not HeldImage.objects.exists()

    assert _replay(monkeypatch, data, site).status is IngestStatus.HELD
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.instances, receipt.held, receipt.status) == (1, 1, "held")
