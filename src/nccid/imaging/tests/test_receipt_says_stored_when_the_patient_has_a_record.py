"""A study whose images are stored and whose patient has a clinical record says "Stored",
however its receipt began: with a held image released later, or with a refused file."""

from __future__ import annotations

import pytest

from nccid.imaging.intake import ingest, ingest_many
from nccid.imaging.models import HeldImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.services import release_held
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _record(site, pseudonym: str, hospital_hash: str = "") -> None:
    """A clinical record of the patient, as an accepted sheet leaves it (and its link)."""
    from nccid.clinical.models import ClinicalRecord, PatientLink, Upload

    upload = Upload.objects.create(site=site, kind="positive", sha256="0" * 64, status="accepted")
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  hospital_hash=hospital_hash, digest="0" * 64, last_upload=upload)
    if hospital_hash:
        PatientLink.objects.create(site=site, hospital_hash=hospital_hash, pseudonym=pseudonym)


def _burned(person, **kw) -> bytes:
    ds = synthetic_instance(person, modality="CR", study=7, **kw)
    ds.BurnedInAnnotation = "YES"
    return to_bytes(ds)


def _release(outcome, make_user) -> StudyReceipt:
    assert outcome.status is IngestStatus.HELD
    held = HeldImage.objects.get(sop_uid=outcome.sop_uid)
    assert release_held(held, make_user("data-manager")) == "stored"
    return StudyReceipt.objects.get(site=held.site, study_uid=held.study_uid)


def test_a_released_image_of_a_patient_with_a_record_is_stored(site, keyring, make_user,
                                                               person_factory):
    person = person_factory(70)
    _record(site, keyring.pseudonym(person.nhs_number))
    receipt = _release(ingest(_burned(person, patient_id=person.nhs_number), site, "test"),
                       make_user)
    assert (receipt.held, receipt.stored, receipt.status) == (0, 1, "stored")
    assert receipt.get_status_display() == "Stored"


def test_an_image_held_by_hospital_number_then_linked_is_stored_when_released(
        site, keyring, make_user, person_factory):
    """Held before its record arrived: the record names the patient by pseudonym, the
    receipt still by hospital number, so only the release can tell it has a record."""
    person = person_factory(71)
    outcome = ingest(_burned(person, plant=False), site, "test")  # hospital number only
    _record(site, keyring.pseudonym(person.nhs_number),
            keyring.hospital_hash(site.code, person.hospital_number))
    receipt = _release(outcome, make_user)
    assert receipt.patient == keyring.pseudonym(person.nhs_number)
    assert (receipt.held, receipt.stored, receipt.status) == (0, 1, "stored")


def test_a_study_begun_by_a_refused_file_is_stored_once_the_rest_arrive(site, keyring,
                                                                        person_factory):
    person = person_factory(72)
    _record(site, keyring.pseudonym(person.nhs_number))
    files = [synthetic_instance(person, modality="CT", study=8, instance=i,
                                patient_id=person.nhs_number) for i in (1, 2, 3)]
    files[0].PatientID = ""  # and no NHS number elsewhere: refused, its study read
    del files[0].OtherPatientIDs
    assert ingest(to_bytes(files[0]), site, "test").status is IngestStatus.REJECTED
    stored = ingest_many([to_bytes(ds) for ds in files[1:]], site, "test")
    assert [o.status for o in stored] == [IngestStatus.STORED] * 2
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.stored, receipt.rejected, receipt.status) == (2, 1, "stored")
    assert receipt.patient == keyring.pseudonym(person.nhs_number)
