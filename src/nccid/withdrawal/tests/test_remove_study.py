"""Removing one study (an identifier found in an image, a study sent in error): it goes from
everywhere and is refused from then on; the patient's other studies and records stay."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent
from nccid.clinical.models import ClinicalRecord
from nccid.imaging.models import StudyReceipt
from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.services import (
    STUDY_REFUSAL,
    STUDY_REMOVED,
    WithdrawalError,
    remove_study,
    study_uid_held,
)

from .conftest import send_images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _catalogued_studies() -> set[str]:
    con = connect_catalogue()
    try:
        return {row[0] for row in con.execute("SELECT study_uid FROM images").fetchall()}
    finally:
        con.close()


def test_a_removed_study_leaves_everywhere_and_the_patients_other_study_stays(
        site, patients, manager, backend):
    patient, _other = patients
    send_images(site, patient.person, study=2, count=2)
    studies = sorted(set(ImageRecord.objects.filter(pseudonym=patient.pseudonym)
                         .values_list("study_uid", flat=True)))
    assert len(studies) == 2
    refresh_catalogue()
    bad = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid
    (good,) = set(studies) - {bad}
    keys = list(ImageRecord.objects.filter(study_uid=bad).values_list("storage_key", "metadata_key"))

    removed = remove_study(manager, bad, "Name burned into the image (researcher report 5)")

    assert removed.images == 3
    assert not any(backend.exists(k) for pair in keys for k in pair)
    assert bad not in _catalogued_studies() and good in _catalogued_studies()
    assert ImageRecord.objects.filter(study_uid=good).count() == 2
    assert ClinicalRecord.objects.filter(pseudonym=patient.pseudonym).exists()
    receipt = StudyReceipt.objects.get(study_uid=bad)
    assert (receipt.status, receipt.stored, receipt.problem) == ("rejected", 0, STUDY_REMOVED)
    assert StudyReceipt.objects.get(study_uid=good).stored == 2
    event = AuditEvent.objects.get(action="study.remove")
    assert event.detail["study_uid"] == bad and event.detail["images"] == 3

    # sent again: refused; another study of the same patient is still taken in
    again = send_images(site, patient.person, study=1)
    assert {(o.status, o.reason) for o in again} == {("rejected", STUDY_REFUSAL)}
    assert not ImageRecord.objects.filter(study_uid=bad).exists()
    assert {o.status for o in send_images(site, patient.person, study=3)} == {"stored"}


def test_a_study_is_named_as_stored_or_as_the_site_sent_it(site, keyring, patients):
    from nccid.synthetic.dicom import synthetic_instance

    patient, _other = patients
    stored = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid
    original = str(synthetic_instance(patient.person, modality="CT", study=1, instance=1,
                                      patient_id=patient.person.nhs_number).StudyInstanceUID)
    assert original != stored
    assert study_uid_held(stored) == stored
    assert study_uid_held(original) == stored
    for wrong in ("", "1.2.3.4.5", "1.2.abc", "9" * 65):
        with pytest.raises(WithdrawalError):
            study_uid_held(wrong)


def test_a_study_that_raced_its_removal_is_swept_before_the_catalogue_shows_it(
        site, patients, manager, monkeypatch):
    patient, _other = patients
    bad = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid
    remove_study(manager, bad, "Sent in error")
    monkeypatch.setattr("nccid.imaging.deps.removed_studies_among", lambda uids: set())
    assert {o.status for o in send_images(site, patient.person, study=1)} == {"stored"}
    monkeypatch.undo()
    refresh_catalogue()
    assert not ImageRecord.objects.filter(study_uid=bad).exists()
    assert bad not in _catalogued_studies()
    assert AuditEvent.objects.filter(action="withdrawal.sweep", detail__study_uid=bad).exists()


def test_only_a_data_manager_with_a_reason_may_remove_a_study(site, patients, make_user, manager):
    patient, _other = patients
    bad = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid
    with pytest.raises(WithdrawalError, match="only data managers"):
        remove_study(make_user("researcher"), bad, "x")
    with pytest.raises(WithdrawalError, match="reason is required"):
        remove_study(manager, bad, "")
    assert ImageRecord.objects.filter(study_uid=bad).count() == 3
