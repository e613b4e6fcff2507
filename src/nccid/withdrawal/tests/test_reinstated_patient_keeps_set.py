"""A reinstated patient sent again returns to the set they were in before the withdrawal, even
from a site whose rule would choose the other set: one set per patient, for good."""

from __future__ import annotations

import pytest

from nccid.warehouse.models import ImageRecord, KeptSet, PatientSet
from nccid.withdrawal.services import reinstate, withdraw

from .conftest import PEOPLE, send_images, send_sheet

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def training_then_validation_site(site, other_site):
    """``site`` sends every patient to training, ``other_site`` to validation."""
    site.split_rule = "training"
    site.save()
    other_site.split_rule = "validation"
    other_site.save()
    return site, other_site


def _withdrawn_and_reinstated(site, person, keyring, manager) -> str:
    assert {o.status for o in send_images(site, person)} == {"stored"}
    pseudonym = keyring.pseudonym(person.nhs_number)
    assert PatientSet.objects.get(pseudonym=pseudonym).set_name == "training"
    withdraw(manager, pseudonym, "sent in error", refresh=False)
    assert not PatientSet.objects.filter(pseudonym=pseudonym).exists()  # the set row goes
    assert KeptSet.objects.get(pseudonym=pseudonym).set_name == "training"  # the set stays
    assert reinstate(manager, pseudonym, "the withdrawal was a mistake")
    return pseudonym


def test_reinstated_patient_sent_again_returns_to_their_set(
        training_then_validation_site, keyring, manager, local_warehouse):
    site, validation_site = training_then_validation_site
    person = PEOPLE[0]
    pseudonym = _withdrawn_and_reinstated(site, person, keyring, manager)

    again = send_images(validation_site, person, study=2)

    assert {o.status for o in again} == {"stored"}, again
    kept = PatientSet.objects.get(pseudonym=pseudonym)
    assert (kept.set_name, kept.site_id) == ("training", site.pk)  # still decided by the first site
    images = ImageRecord.objects.filter(pseudonym=pseudonym)
    assert images.count() == 3 and set(images.values_list("set_name", flat=True)) == {"training"}
    assert all(key.startswith("training/") for key in images.values_list("storage_key", flat=True))
    # a patient never withdrawn still follows the validation site's rule
    assert {o.status for o in send_images(validation_site, PEOPLE[1], study=3)} == {"stored"}
    other = keyring.pseudonym(PEOPLE[1].nhs_number)
    assert PatientSet.objects.get(pseudonym=other).set_name == "validation"


def test_reinstated_patient_back_by_a_clinical_sheet_returns_to_their_set(
        training_then_validation_site, keyring, manager, make_user, local_warehouse,
        django_capture_on_commit_callbacks):
    site, validation_site = training_then_validation_site
    person = PEOPLE[2]
    pseudonym = _withdrawn_and_reinstated(site, person, keyring, manager)

    with django_capture_on_commit_callbacks(execute=True):  # the records' JSON is written on commit
        upload = send_sheet(validation_site, make_user("uploader", validation_site), [person])

    assert upload.status == "accepted", upload.status
    assert PatientSet.objects.get(pseudonym=pseudonym).set_name == "training"
    assert local_warehouse.list(f"training/data/{pseudonym}")
    assert not local_warehouse.list(f"validation/data/{pseudonym}")
