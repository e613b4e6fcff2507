"""A removed study's receipt counts each of its instances once: sent again after the patient's
withdrawal or the study's removal, its refused instances are the ones already counted; stored
again after a reinstatement, their refusal is taken back."""

from __future__ import annotations

import pytest

from nccid.imaging.models import StudyReceipt
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.services import REFUSAL, STUDY_REFUSAL, reinstate, remove_study, withdraw

from .conftest import send_images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _counts(site, study_uid: str) -> tuple:
    r = StudyReceipt.objects.get(site=site, study_uid=study_uid)
    return r.instances, r.stored, r.rejected, r.problem


def test_a_withdrawn_patients_study_sent_again_and_after_reinstatement_counts_once(
        site, patients, manager):
    patient = patients[0]
    study_uid = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid
    withdraw(manager, patient.pseudonym, "Patient objected", refresh=False)

    assert {o.status for o in send_images(site, patient.person, study=1)} == {"rejected"}
    assert _counts(site, study_uid) == (3, 0, 3, REFUSAL)

    reinstate(manager, patient.pseudonym, "Withdrawn in error")
    assert {o.status for o in send_images(site, patient.person, study=1)} == {"stored"}
    assert _counts(site, study_uid) == (3, 3, 0, "")


def test_a_removed_study_sent_again_counts_once(site, patients, manager):
    patient = patients[0]
    study_uid = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid
    remove_study(manager, study_uid, "Name burned into the image", refresh=False)

    assert {o.status for o in send_images(site, patient.person, study=1)} == {"rejected"}
    assert _counts(site, study_uid) == (3, 0, 3, STUDY_REFUSAL)
