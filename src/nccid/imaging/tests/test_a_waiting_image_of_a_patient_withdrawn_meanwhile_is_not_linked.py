"""A withdrawal finds the waiting images of the patient it withdraws; an image whose patient
became known only after it (a sheet linking its hospital number) was then linked and stored
under the withdrawn patient, and the importer told "stored", until the next catalogue
refresh's sweep (found by the races review). The linker refuses such images, as intake does:
nothing kept, the receipt counting them refused, the importer told why. So for a study
removed while its images waited."""

from __future__ import annotations

import pytest

from nccid.imaging import deps
from nccid.imaging.intake import ingest
from nccid.imaging.linking import link_known
from nccid.imaging.models import PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.models import StudyWithdrawal, Withdrawal

from .sheets import record_and_link

pytestmark = [pytest.mark.django_db(databases=["default", "vault"]),
              pytest.mark.usefixtures("pending_folder")]


def _by_hospital_number(person, study: int = 1) -> bytes:
    return to_bytes(synthetic_instance(person, plant=False, study=study,
                                       patient_id=person.hospital_number))


def _refused_so(site, said: str) -> None:
    assert not ImageRecord.objects.exists() and not PendingImage.objects.exists()
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.instances, receipt.stored, receipt.pending, receipt.rejected) == (1, 0, 0, 1)
    assert said in receipt.problem


def test_the_linker_refuses_a_waiting_image_of_a_patient_withdrawn_since(site, keyring,
                                                                         person_factory):
    person = person_factory(161)
    assert ingest(_by_hospital_number(person), site, "test").status is IngestStatus.PENDING
    pseudonym, _, _ = record_and_link(site, keyring, person)
    Withdrawal.objects.create(pseudonym=pseudonym, requested_by="dm", reason="objected")

    assert link_known().refused == 1
    _refused_so(site, deps.WITHDRAWN_REFUSAL)


def test_the_linker_refuses_a_waiting_image_of_a_study_removed_since(site, keyring,
                                                                     person_factory):
    person = person_factory(162)
    outcome = ingest(_by_hospital_number(person), site, "test")
    record_and_link(site, keyring, person)
    study = PendingImage.objects.get(sop_uid=outcome.sop_uid).study_uid
    StudyWithdrawal.objects.create(study_uid=study, requested_by="dm", reason="sent in error")

    assert link_known().refused == 1
    _refused_so(site, deps.STUDY_REFUSAL)


def test_an_import_that_found_no_link_is_told_its_withdrawn_image_was_not_kept(
        site, keyring, person_factory, monkeypatch):
    """The importer identified the file before the sheet (no link) and keeps it waiting after
    the sheet and the withdrawal: its own link refuses it, and it says so."""
    person = person_factory(163)
    pseudonym, _, _ = record_and_link(site, keyring, person)
    Withdrawal.objects.create(pseudonym=pseudonym, requested_by="dm", reason="objected")
    real = deps.pseudonym_for_hospital_number
    asked = []

    def link_unknown_when_parsed(site, hospital_hash):
        asked.append(hospital_hash)
        return None if len(asked) == 1 else real(site, hospital_hash)

    monkeypatch.setattr(deps, "pseudonym_for_hospital_number", link_unknown_when_parsed)
    outcome = ingest(_by_hospital_number(person), site, "test")

    assert (outcome.status, outcome.reason) == (IngestStatus.REJECTED, deps.WITHDRAWN_REFUSAL)
    _refused_so(site, deps.WITHDRAWN_REFUSAL)
