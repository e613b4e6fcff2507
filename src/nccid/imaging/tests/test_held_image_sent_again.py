"""A held image's decision does not block the same image sent again: only an image still
awaiting a decision is 'already received'. A release that fails leaves the image held."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from nccid.config import get_settings
from nccid.imaging import services
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.services import held_images, purge_expired, reject_held, release_held
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _ultrasound_by_hospital_number(person) -> bytes:
    """Held (ultrasound burns text in), and pending once released (no clinical record)."""
    return to_bytes(synthetic_instance(person, modality="US", plant=False, study=42))


def _files(sop_uid: str) -> list[str]:
    return sorted(p.name for p in get_settings().pending_dir.glob(f"{sop_uid}*"))


def test_an_image_released_then_purged_is_held_again_when_sent_again(site, make_user,
                                                                     person_factory):
    data = _ultrasound_by_hospital_number(person_factory(40))
    first = ingest(data, site, "test")
    assert first.status is IngestStatus.HELD
    assert release_held(HeldImage.objects.get(sop_uid=first.sop_uid),
                        make_user("data-manager")) == "pending"
    assert purge_expired(now=timezone.now() + timedelta(days=400)) == 1
    again = ingest(data, site, "test")
    assert (again.status, again.sop_uid) == (IngestStatus.HELD, first.sop_uid)
    assert [h.sop_uid for h in held_images()] == [first.sop_uid]
    assert _files(first.sop_uid) == [f"{first.sop_uid}.held"]
    held = HeldImage.objects.get(sop_uid=first.sop_uid)
    assert (held.decided_by, held.decided_at) == ("", None)
    assert StudyReceipt.objects.get(site=site).held == 1


def test_an_image_rejected_is_held_again_for_a_new_decision_when_sent_again(site, make_user,
                                                                           person_factory):
    data = _ultrasound_by_hospital_number(person_factory(41))
    first = ingest(data, site, "test")
    reject_held(HeldImage.objects.get(sop_uid=first.sop_uid), make_user("data-manager"),
                reason="name in the corner")
    assert ingest(data, site, "test").status is IngestStatus.HELD
    assert [h.sop_uid for h in held_images()] == [first.sop_uid]


def test_an_image_awaiting_a_decision_is_already_received(site, person_factory):
    data = _ultrasound_by_hospital_number(person_factory(42))
    assert ingest(data, site, "test").status is IngestStatus.HELD
    again = ingest(data, site, "test")
    assert (again.status, again.reason) == (IngestStatus.DUPLICATE, "already received")


def test_a_release_that_fails_leaves_the_image_held_and_can_be_tried_again(
        site, make_user, person_factory, monkeypatch):
    data = _ultrasound_by_hospital_number(person_factory(43))
    sop_uid = ingest(data, site, "test").sop_uid
    manager = make_user("data-manager")

    def broken(query):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(services, "refresh_receipt_status", broken)
        with pytest.raises(RuntimeError):
            release_held(HeldImage.objects.get(sop_uid=sop_uid), manager)
    held = HeldImage.objects.get(sop_uid=sop_uid)
    assert (held.status, held.decided_by) == ("held", "")
    assert [h.sop_uid for h in held_images()] == [sop_uid]
    assert _files(sop_uid) == [f"{sop_uid}.held"]  # its file kept, no stray pending copy
    assert not PendingImage.objects.exists()
    assert StudyReceipt.objects.get(site=site).held == 1
    assert release_held(held, manager) == "pending"
    assert _files(sop_uid) == [f"{sop_uid}.pending"] and not list(held_images())
