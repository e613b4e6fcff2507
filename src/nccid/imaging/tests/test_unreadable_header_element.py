"""A header element pydicom cannot read (a corrupt VR) is the file's fault, not an outage: the
file is refused naming the element (never its value), the refusal counts into a receipt the
site sees, and the node's drain does not retry it."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from nccid.imaging.intake import UNREADABLE_STUDY, ingest
from nccid.imaging.models import StudyReceipt
from nccid.imaging.node import _internal
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _corrupt_vr(data: bytes, tag: bytes, vr: bytes) -> bytes:
    """The file with one element's explicit VR changed to one pydicom does not know."""
    at = data.find(tag + vr)
    assert at > 132
    return data[:at + 4] + vr[:1] + vr[1:].lower() + data[at + 6:]


def _with_other_ids(person) -> Dataset:
    ds = synthetic_instance(person, plant=False)
    item = Dataset()
    item.PatientID = person.nhs_number
    ds.OtherPatientIDsSequence = [item]
    ds.IssuerOfPatientID = "RTEST"
    return ds


CASES = {  # keyword: (tag bytes, its VR)
    "PatientID": (b"\x10\x00\x20\x00", b"LO"),
    "Modality": (b"\x08\x00\x60\x00", b"CS"),
    "IssuerOfPatientID": (b"\x10\x00\x21\x00", b"LO"),  # read by the de-identifier only
}


@pytest.mark.parametrize("element", list(CASES))
def test_an_unreadable_element_is_refused_by_name_into_its_studys_receipt(
        site, keyring, person_factory, element):
    person = person_factory(50)
    ds = _with_other_ids(person)
    outcome = ingest(_corrupt_vr(to_bytes(ds), *CASES[element]), site, "node")
    assert outcome.status is IngestStatus.REJECTED
    assert outcome.reason.startswith(f"unreadable DICOM header: {element} (")
    assert person.nhs_number not in outcome.reason and person.hospital_number not in outcome.reason
    assert not _internal(outcome)  # the drain retries internal errors only
    receipt = StudyReceipt.objects.get(site=site, study_uid=keyring.uid(str(ds.StudyInstanceUID)))
    assert (receipt.rejected, receipt.stored, receipt.status) == (1, 0, "rejected")
    assert receipt.problem == outcome.reason


def test_a_refused_dicom_file_without_a_readable_study_counts_into_a_receipt_of_its_own(
        site, person_factory):
    cut = to_bytes(synthetic_instance(person_factory(51), plant=False))[:600]
    outcome = ingest(cut, site, "node")
    assert outcome.status is IngestStatus.REJECTED and "incomplete DICOM" in outcome.reason
    receipt = StudyReceipt.objects.get(site=site)
    assert receipt.study_uid == UNREADABLE_STUDY.study_uid
    assert (receipt.rejected, receipt.problem, receipt.status) == (1, outcome.reason, "rejected")
    assert ingest(b"name,nhs_number\n" * 20, site, "node").status is IngestStatus.REJECTED
    assert StudyReceipt.objects.get(site=site).rejected == 1  # not DICOM: no receipt to add to


def test_a_refused_file_without_a_readable_sop_uid_sent_again_is_counted_once(
        site, person_factory):
    whole = to_bytes(synthetic_instance(person_factory(52), plant=False))
    cut = whole[:140]  # the preamble, "DICM" and a few bytes: no UID can be read
    for _ in range(2):
        assert ingest(cut, site, "node").status is IngestStatus.REJECTED
    assert StudyReceipt.objects.get(site=site).rejected == 1
    assert ingest(whole[:150], site, "node").status is IngestStatus.REJECTED  # another file
    assert StudyReceipt.objects.get(site=site).rejected == 2
