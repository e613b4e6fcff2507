"""A study's receipt tells the truth about images that are gone: pending images deleted past
retention and held images a data manager rejected count as refused, saying why (not
"waiting for clinical record"); a refused file sent again is counted once, and its refusal
is taken back once the same instance is received again and kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from nccid.accounts.models import AuditEvent
from nccid.config import get_settings
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage, RefusedInstance, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.services import purge_expired, reject_held
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _counts(site) -> tuple:
    r = StudyReceipt.objects.get(site=site)
    return r.instances, r.stored, r.pending, r.held, r.rejected, r.status


def _instances(person, count: int, **kw) -> list[bytes]:
    return [to_bytes(synthetic_instance(person, instance=i, plant=False, **kw))
            for i in range(1, count + 1)]


def test_purged_pending_images_count_as_deleted_not_waiting(site, person_factory):
    files = _instances(person_factory(50), 3)
    assert {ingest(d, site, "test").status for d in files} == {IngestStatus.PENDING}

    assert purge_expired(now=timezone.now() + timedelta(days=400)) == 3

    assert _counts(site) == (3, 0, 0, 0, 3, "rejected")
    days = get_settings().pending_retention_days
    assert StudyReceipt.objects.get(site=site).problem.startswith(
        f"deleted: no clinical record arrived within {days} days")
    event = AuditEvent.objects.get(action="imaging.pending.purge")
    assert event.detail["count"] == 3
    assert event.detail["sites"] == {site.code: 3}


def test_a_rejected_held_image_counts_as_deleted_after_review(site, make_user, person_factory):
    [data] = _instances(person_factory(51), 1, modality="US")
    held = ingest(data, site, "test")
    assert held.status is IngestStatus.HELD

    reject_held(HeldImage.objects.get(sop_uid=held.sop_uid), make_user("data-manager"),
                reason="a name in the corner")

    assert _counts(site) == (1, 0, 0, 0, 1, "rejected")
    problem = StudyReceipt.objects.get(site=site).problem
    assert problem.startswith("deleted after review: burned-in text")
    assert "corner" not in problem  # the reviewer's words stay in the audit


def test_refused_files_sent_again_are_counted_once(site, person_factory):
    files = _instances(person_factory(52), 2, patient_id="")
    for _ in range(2):  # a study sent again, or a spool replayed after a crash
        assert {ingest(d, site, "test").status for d in files} == {IngestStatus.REJECTED}

    assert _counts(site) == (2, 0, 0, 0, 2, "rejected")
    assert RefusedInstance.objects.filter(site=site).count() == 2


def test_a_purged_image_sent_again_and_kept_takes_its_deletion_back(site, person_factory):
    files = _instances(person_factory(53), 2)
    for data in files:
        ingest(data, site, "test")
    purge_expired(now=timezone.now() + timedelta(days=400))
    assert _counts(site)[4] == 2

    assert ingest(files[0], site, "test").status is IngestStatus.PENDING

    assert _counts(site) == (2, 0, 1, 0, 1, "pending")
    assert RefusedInstance.objects.filter(site=site).count() == 1


def test_a_refusal_is_taken_back_when_the_instance_is_stored(site, keyring, person_factory):
    person = person_factory(54)
    [refused] = _instances(person, 1, patient_id="")
    assert ingest(refused, site, "test").status is IngestStatus.REJECTED
    [fixed] = _instances(person, 1, patient_id=person.nhs_number)  # same instance, corrected

    assert ingest(fixed, site, "test").status is IngestStatus.STORED

    receipt = StudyReceipt.objects.get(site=site)
    assert _counts(site) == (1, 1, 0, 0, 0, "waiting")
    assert receipt.problem == ""
    assert not RefusedInstance.objects.exists()
