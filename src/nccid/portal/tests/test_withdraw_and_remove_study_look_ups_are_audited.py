"""The withdraw and remove-study pages audit every look-up, found or not. Before, a number
nothing named was answered "Nothing in the database or the warehouse names NCCID-…" unaudited
(a page turning NHS numbers into pseudonyms), and a study found by the UID its site sent
showed its stored UID and its patient's pseudonym unaudited."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from nccid.accounts.models import AuditEvent
from nccid.imaging.intake import ingest_many
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.models import ImageRecord

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
SENT, NOT_SENT = people(2, seed=33)


@pytest.fixture
def sent(site, keyring, local_warehouse):
    """The first person's study of one image, and the UID the site sent it with."""
    image = synthetic_instance(SENT, patient_id=SENT.nhs_number, instance=1)
    [outcome] = ingest_many([to_bytes(image)], site, "test")
    assert outcome.status == "stored"
    return keyring.pseudonym(SENT.nhs_number), str(image.StudyInstanceUID)


def test_a_number_nothing_names_is_audited_and_its_pseudonym_not_shown(client, make_user,
                                                                       keyring, sent):
    manager = make_user("data-manager")
    client.force_login(manager)
    answer = client.post(reverse("figures:withdraw"), {"patient": NOT_SENT.nhs_number})
    text = answer.content.decode()
    pseudonym = keyring.pseudonym(NOT_SENT.nhs_number)
    assert answer.status_code == 400
    assert "Nothing in the database or the warehouse names this patient" in text
    assert pseudonym not in text and NOT_SENT.nhs_number not in text
    [event] = AuditEvent.objects.filter(action="patient.look-up")
    assert (event.username, event.pseudonym, event.detail) == (
        manager.username, pseudonym, {"found": False})


def test_a_study_found_by_its_uid_as_sent_is_audited_by_its_stored_uid(client, make_user, sent):
    pseudonym, original = sent
    stored = ImageRecord.objects.get(pseudonym=pseudonym).study_uid
    manager = make_user("data-manager")
    client.force_login(manager)
    found = client.post(reverse("figures:remove_study"), {"study": original}).content.decode()
    assert stored in found and pseudonym in found and "Remove this study" in found
    [event] = AuditEvent.objects.filter(action="study.look-up")
    assert (event.username, event.pseudonym) == (manager.username, pseudonym)
    assert event.detail["study_uid"] == stored and event.detail["as_sent"] is True
    assert original not in json.dumps(event.detail)
    audit_page = client.get(reverse("figures:audit") + "?kind=study").content.decode()
    assert "study.look-up" in audit_page and original not in audit_page
