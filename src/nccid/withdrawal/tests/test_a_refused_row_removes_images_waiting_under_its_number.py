"""Images a site sends by a hospital number no sheet has linked yet wait, encrypted, for a link:
a withdrawal cannot tell whose they are. A sheet row pairing that number with the withdrawn
patient is refused, and it tells: the site's images waiting or held under that number go as
the withdrawal's own did, counted on the withdrawal and audited."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent
from nccid.clinical.models import PatientLink, Upload
from nccid.clinical.services import WITHDRAWN_ROW, preview_upload
from nccid.clinical.tests.helpers import sheet_of
from nccid.config import get_settings
from nccid.imaging.intake import ingest_many
from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.withdrawal.models import Withdrawal
from nccid.withdrawal.services import REMOVED, remove_waiting_by_hospital_number, withdraw

from .conftest import PEOPLE, send_sheet

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _sent_by_hospital_number(site, person) -> list[str]:
    """A study sent by hospital number only: one image waits for a link, one is held for
    review (burned-in text). The names of their encrypted files."""
    files = [synthetic_instance(person, plant=False, study=7, instance=i) for i in (1, 2)]
    files[1].BurnedInAnnotation = "YES"
    outcomes = ingest_many([to_bytes(ds) for ds in files], site, "test")
    assert [o.status for o in outcomes] == ["pending", "held"]
    return [*PendingImage.objects.values_list("file_name", flat=True),
            *HeldImage.objects.values_list("file_name", flat=True)]


def _gone(files: list[str]) -> bool:
    folder = get_settings().pending_dir
    return not PendingImage.objects.exists() and not HeldImage.objects.exists() and not any(
        (folder / name).exists() for name in files)


def test_a_refused_row_removes_the_images_waiting_under_its_hospital_number(
        site, other_site, patients, manager, make_user, django_capture_on_commit_callbacks):
    gone = patients[0]
    files = _sent_by_hospital_number(other_site, gone.person)
    withdraw(manager, gone.pseudonym, "Patient objected", refresh=False)
    assert PendingImage.objects.count() == 1  # no link names the number: not found yet

    with django_capture_on_commit_callbacks(execute=True):  # (a test runs in a transaction)
        upload = send_sheet(other_site, make_user("uploader", other_site), [gone.person])

    assert upload.status == "rejected" and [e["reason"] for e in upload.errors] == [WITHDRAWN_ROW]
    assert _gone(files)
    receipt = StudyReceipt.objects.get(site=other_site)
    assert (receipt.instances, receipt.pending, receipt.held, receipt.rejected, receipt.status,
            receipt.problem) == (2, 0, 0, 2, "rejected", REMOVED)
    counts = Withdrawal.objects.get(pseudonym=gone.pseudonym).removed
    assert (counts["pending"], counts["held"], counts["images"]) == (1, 1, 3)
    event = AuditEvent.objects.get(action="patient.withdraw.waiting")
    assert (event.pseudonym, event.detail["site"], event.detail["pending"], event.detail["held"]) == (
        gone.pseudonym, other_site.code, 1, 1)
    assert not PatientLink.objects.filter(site=other_site).exists()  # the row is not stored


def test_a_withdrawal_removes_images_waiting_under_a_number_a_checked_sheet_gives(
        other_site, keyring, manager, make_user, local_warehouse):
    person = PEOPLE[4]
    pseudonym = keyring.pseudonym(person.nhs_number)
    files = _sent_by_hospital_number(other_site, person)
    upload = preview_upload(other_site, "positive", "s.xlsx", sheet_of("positive", [{"age": 40}], [person]),
                            make_user("uploader", other_site))
    assert upload.status == "preview"

    removed = withdraw(manager, pseudonym, "Sent the wrong person", refresh=False)

    assert _gone(files)
    assert (removed.pending, removed.held, removed.extra["checked_uploads"]) == (1, 1, 1)
    assert Upload.objects.get(pk=upload.pk).staged["records"] == []


def test_a_number_the_site_links_to_another_patient_keeps_its_images(
        other_site, keyring, manager, local_warehouse):
    person, other = PEOPLE[4], PEOPLE[5]
    files = _sent_by_hospital_number(other_site, person)
    hospital_hash = keyring.hospital_hash(other_site.code, person.hospital_number)
    PatientLink.objects.create(site=other_site, hospital_hash=hospital_hash,
                               pseudonym=keyring.pseudonym(other.nhs_number))
    pseudonym = keyring.pseudonym(person.nhs_number)
    withdraw(manager, pseudonym, "Patient objected", refresh=False)

    assert remove_waiting_by_hospital_number(other_site, {hospital_hash: pseudonym}, manager) == {}
    assert not _gone(files) and PendingImage.objects.count() == 1
