"""An image whose Patient ID (or Other Patient IDs) is an NHS test number (999 range) is
refused as test data on a live installation (setting accept_test_numbers, false by default),
like a clinical row carrying one: nothing of it is kept, not the number for the vault either,
and the site's receipt counts it refused with the reason. With the setting true (tests, the
demo) such an image is taken as any other."""

from __future__ import annotations

import pytest

from nccid.identity.models import VaultEntry
from nccid.imaging.intake import TEST_NUMBER_REFUSED, ingest, ingest_many
from nccid.imaging.models import PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _image(person, where: str = "PatientID", **kw) -> bytes:
    """An image with the person's NHS number in ``where``; PatientID is otherwise their
    hospital number."""
    ds = synthetic_instance(person, plant=False, **kw)
    setattr(ds, where, person.nhs_number)
    return to_bytes(ds)


@pytest.mark.parametrize("where", ["PatientID", "OtherPatientIDs"])
def test_a_test_number_is_refused_and_nothing_is_kept(site, person_factory,
                                                      accept_test_numbers, where):
    accept_test_numbers("false")
    outcome = ingest(_image(person_factory(60), where), site, "test")

    assert (outcome.status, outcome.reason) == (IngestStatus.REJECTED, TEST_NUMBER_REFUSED)
    assert TEST_NUMBER_REFUSED == ("the patient's NHS number is an NHS test number (999 range), "
                                   "not a patient's: this installation refuses test data "
                                   "(setting accept_test_numbers)")
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.instances, receipt.stored, receipt.pending, receipt.rejected) == (1, 0, 0, 1)
    assert receipt.problem == TEST_NUMBER_REFUSED
    assert not VaultEntry.objects.exists() and not PendingImage.objects.exists()
    assert not ImageRecord.objects.exists()


def test_an_import_batch_refuses_them_too(site, person_factory, accept_test_numbers):
    accept_test_numbers("false")
    files = [_image(person_factory(61), instance=i) for i in (1, 2)]

    outcomes = ingest_many(files, site, "test")

    assert {(o.status, o.reason) for o in outcomes} == {(IngestStatus.REJECTED,
                                                         TEST_NUMBER_REFUSED)}
    assert StudyReceipt.objects.get(site=site).rejected == 2


def test_a_test_number_is_taken_when_the_setting_says_so(site, person_factory,
                                                         accept_test_numbers):
    accept_test_numbers("true")
    person = person_factory(62)

    outcome = ingest(_image(person), site, "test")

    assert outcome.status is IngestStatus.STORED
    assert VaultEntry.objects.count() == 1
