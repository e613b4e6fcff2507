"""A clinical record committed while a batch of its patient's images is being de-identified
(the sheet confirmed during an import or a node drain): the batch, committed after, learns
it. Its study says "Stored", not "Waiting for clinical record" for good, and its images
are linked (the record's own linking ran before the batch's rows existed)."""

from __future__ import annotations

import pytest

from nccid.clinical.signals import AcceptedRecord, records_accepted
from nccid.imaging.intake import finish_many, prepare_many
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _accept_record(site, pseudonym: str) -> None:
    """A sheet naming the patient, committed, and what its commit runs (linking, JSON)."""
    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind="positive", sha256="0" * 64, status="accepted")
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  hospital_hash="", digest="0" * 64, last_upload=upload)
    records_accepted.send(sender=Upload, site=site, upload_id=upload.pk, records=[
        AcceptedRecord(pseudonym=pseudonym, hospital_hash=None, kind="positive", cleaned={})])


def test_a_record_accepted_between_prepare_and_commit_marks_the_study_stored(
        site, keyring, local_warehouse, person_factory):
    person = person_factory(90)
    pseudonym = keyring.pseudonym(person.nhs_number)
    files = [to_bytes(synthetic_instance(person, modality="CT", study=3, instance=i,
                                         patient_id=person.nhs_number)) for i in (1, 2, 3)]
    prepared = prepare_many(files, site, "test")  # no record yet: read as "no clinical record"
    _accept_record(site, pseudonym)  # committed before the batch is
    outcomes = finish_many(prepared)

    assert [o.status for o in outcomes] == [IngestStatus.STORED] * 3
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.stored, receipt.has_clinical, receipt.status) == (3, True, "stored")
    assert receipt.get_status_display() == "Stored"
    assert sorted(ImageRecord.objects.values_list("linked", flat=True)) == [True] * 3


def test_a_patient_with_no_record_still_waits(site, keyring, local_warehouse, person_factory):
    person = person_factory(91)
    files = [to_bytes(synthetic_instance(person, modality="CT", study=4, instance=1,
                                         patient_id=person.nhs_number))]
    finish_many(prepare_many(files, site, "test"))
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.has_clinical, receipt.status) == (False, "waiting")
    assert list(ImageRecord.objects.values_list("linked", flat=True)) == [False]
