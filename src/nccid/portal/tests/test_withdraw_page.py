"""The data managers' withdrawal pages: find a patient, see what is held, withdraw them; find a
study, remove it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from nccid.accounts.models import AuditEvent
from nccid.imaging.intake import ingest_many
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.models import Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def patient(site, keyring, local_warehouse):
    """A patient with a study of two images, in a fresh local warehouse."""
    person = people(1, seed=31)[0]
    outcomes = ingest_many([to_bytes(synthetic_instance(person, patient_id=person.nhs_number, instance=i))
                            for i in (1, 2)], site, "test")
    assert {o.status for o in outcomes} == {"stored"}
    return person, keyring.pseudonym(person.nhs_number)


def test_a_data_manager_finds_a_patient_by_number_then_withdraws_them(client, make_user, patient):
    person, pseudonym = patient
    client.force_login(make_user("data-manager"))
    page = reverse("figures:withdraw")
    found = client.post(page, {"patient": person.nhs_number}).content.decode()
    assert pseudonym in found and "2 in 1 study" in found and "Withdraw this patient" in found
    assert person.nhs_number not in found
    assert not Withdrawal.objects.exists()  # finding deletes nothing, and is audited
    assert AuditEvent.objects.filter(action="patient.look-up", pseudonym=pseudonym).count() == 1
    no_reason = client.post(page, {"patient": pseudonym, "step": "withdraw", "reason": " "})
    assert no_reason.status_code == 400 and "A reason is required" in no_reason.content.decode()
    number_in_reason = client.post(page, {"patient": pseudonym, "step": "withdraw",
                                          "reason": f"patient {person.nhs_number} objected"})
    assert number_in_reason.status_code == 400
    assert person.nhs_number not in number_in_reason.content.decode()
    assert ImageRecord.objects.filter(pseudonym=pseudonym).count() == 2
    done = client.post(page, {"patient": pseudonym, "step": "withdraw", "reason": "Objected (ref 3)"},
                       follow=True)
    assert done.status_code == 200 and "has been withdrawn" in done.content.decode()
    assert "no-store" in done["Cache-Control"]
    assert not ImageRecord.objects.filter(pseudonym=pseudonym).exists()
    listed = client.get(page).content.decode()
    assert pseudonym in listed and "Objected (ref 3)" in listed


def test_a_mistyped_number_is_refused_without_echoing_it(client, make_user, patient):
    person, _ = patient
    client.force_login(make_user("data-manager"))
    wrong = person.nhs_number[:-1] + str((int(person.nhs_number[-1]) + 1) % 10)
    answer = client.post(reverse("figures:withdraw"), {"patient": wrong})
    assert answer.status_code == 400
    assert "valid check digit" in answer.content.decode() and wrong not in answer.content.decode()


def test_a_data_manager_finds_a_study_then_removes_it(client, make_user, patient):
    person, pseudonym = patient
    study_uid = ImageRecord.objects.filter(pseudonym=pseudonym).values_list("study_uid", flat=True)[0]
    client.force_login(make_user("data-manager"))
    page = reverse("figures:remove_study")
    unknown = client.post(page, {"study": "1.2.3.4"})
    assert unknown.status_code == 400 and "No study with this Study Instance UID" in unknown.content.decode()
    found = client.post(page, {"study": study_uid}).content.decode()
    assert pseudonym in found and "Remove this study" in found
    assert ImageRecord.objects.filter(study_uid=study_uid).count() == 2
    assert client.post(page, {"study": study_uid, "step": "remove", "reason": ""}).status_code == 400
    done = client.post(page, {"study": study_uid, "step": "remove", "reason": "Name burned in"},
                       follow=True)
    assert done.status_code == 200 and "has been removed" in done.content.decode()
    assert not ImageRecord.objects.filter(study_uid=study_uid).exists()
    assert study_uid in client.get(page).content.decode()


def _unlinked_study(site, person) -> str:
    """A study sent by hospital number, no sheet naming it yet: two images wait for the link,
    a third is held for review (burned-in text). Its stored UID."""
    files = [synthetic_instance(person, plant=False, study=5, instance=i) for i in (1, 2, 3)]
    files[2].BurnedInAnnotation = "YES"
    outcomes = ingest_many([to_bytes(ds) for ds in files], site, "test")
    assert [o.status for o in outcomes] == ["pending", "pending", "held"]
    from nccid.imaging.models import StudyReceipt

    return StudyReceipt.objects.get(site=site).study_uid


def test_the_study_confirmation_lists_its_held_and_waiting_images(client, make_user, site,
                                                                  local_warehouse):
    """Not only its stored images: the removal deletes the held and waiting ones too."""
    study_uid = _unlinked_study(site, people(2, seed=31)[1])
    client.force_login(make_user("data-manager"))
    found = client.post(reverse("figures:remove_study"), {"study": study_uid}).content.decode()
    assert "Remove this study" in found
    rows = dict(re.findall(r'__key">([^<]*)</dt><dd class="nhsuk-summary-list__value[^"]*">'
                           r"([^<]*)</dd>", found.split('id="study"')[1].split("</dl>")[0]))
    assert (rows["Stored images"], rows["Held for review"], rows["Waiting for a link"],
            rows["Teaching cases"]) == ("0", "1", "2", "0")
    assert rows["Patient"].startswith("None named yet")
