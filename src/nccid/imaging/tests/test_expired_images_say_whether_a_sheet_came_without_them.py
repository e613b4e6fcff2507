"""An image deleted past retention tells its site why: no sheet of the site came after it
("no clinical record arrived"), or the site's sheets came and none named its Patient ID (then
the Patient ID is at fault, not a missing spreadsheet)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from nccid.imaging.intake import ingest
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.services import purge_expired
from nccid.synthetic.dicom import synthetic_instance, to_bytes

from .sheets import record_and_link

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _waiting(site, person) -> None:
    outcome = ingest(to_bytes(synthetic_instance(person, plant=False)), site, "test")
    assert outcome.status is IngestStatus.PENDING


def _confirm(upload, when) -> None:
    upload.confirmed_at = when
    upload.save(update_fields=["confirmed_at"])


def _problem_after_purge(site) -> str:
    assert purge_expired(now=timezone.now() + timedelta(days=400)) == 1
    return StudyReceipt.objects.get(site=site).problem


def test_a_sheet_of_the_site_after_the_image_naming_none_blames_the_patient_id(
        site, keyring, person_factory):
    _waiting(site, person_factory(60))
    _, _, upload = record_and_link(site, keyring, person_factory(61))  # another patient
    _confirm(upload, timezone.now() + timedelta(seconds=1))

    problem = _problem_after_purge(site)

    assert "Patient ID matched none of the clinical records your site sent" in problem
    assert "no clinical record arrived" not in problem


def test_no_sheet_since_the_image_says_no_clinical_record_arrived(site, keyring,
                                                                   person_factory):
    _, _, upload = record_and_link(site, keyring, person_factory(62))
    _confirm(upload, timezone.now() - timedelta(days=1))  # before the image
    _waiting(site, person_factory(63))

    assert _problem_after_purge(site).startswith("deleted: no clinical record arrived")


def test_another_sites_sheet_is_not_this_sites(site, other_site, keyring, person_factory):
    _waiting(site, person_factory(64))
    _, _, upload = record_and_link(other_site, keyring, person_factory(65))
    _confirm(upload, timezone.now() + timedelta(seconds=1))

    assert _problem_after_purge(site).startswith("deleted: no clinical record arrived")
