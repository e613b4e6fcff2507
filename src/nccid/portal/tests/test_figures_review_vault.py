"""Data managers' pages: the review queue of held images and the audited vault reveal."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from nccid.accounts.models import ApiToken, AuditEvent
from nccid.identity.service import encrypt_for_vault, pseudonymise, store_in_vault
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def held(site, keyring):
    """Two images held at intake for suspected burned-in text (through the real pipeline)."""
    person = people(1, seed=4)[0]
    outcomes = []
    for n in (1, 2):
        ds = synthetic_instance(person, patient_id=person.nhs_number, instance=n)
        ds.BurnedInAnnotation = "YES"
        outcomes.append(ingest(to_bytes(ds), site, "test"))
    assert {o.status for o in outcomes} == {"held"}
    return list(HeldImage.objects.order_by("pk"))


def test_data_manager_releases_and_rejects_held_images_from_the_queue(client, make_user, held):
    manager = make_user("data-manager")
    client.force_login(manager)
    page = client.get(reverse("figures:review"))
    assert page.status_code == 200
    assert page.content.decode().count("Release<span") == 2
    release = reverse("figures:review_decide", args=[held[0].pk, "release"])
    reject = reverse("figures:review_decide", args=[held[1].pk, "reject"])
    assert client.post(release).status_code == 302
    assert client.post(reject).status_code == 302
    statuses = dict(HeldImage.objects.values_list("pk", "status"))
    assert statuses == {held[0].pk: "released", held[1].pk: "rejected"}
    again = client.post(release, follow=True)
    assert "already been decided" in again.content.decode()
    assert "No image is waiting for review" in client.get(reverse("figures:review")).content.decode()


def test_review_queue_over_the_api_for_data_managers_only(client, site, make_user, held):
    manager, uploader = make_user("data-manager"), make_user("uploader", site=site)
    _, manager_token = ApiToken.issue(manager, "t")
    _, uploader_token = ApiToken.issue(uploader, "t")
    listed = client.get("/api/review/held", HTTP_AUTHORIZATION=f"Bearer {manager_token}")
    assert [h["id"] for h in listed.json()] == [h.pk for h in held]
    assert listed.json()[0]["site"] == site.code
    denied = client.post(f"/api/review/held/{held[0].pk}/release",
                         HTTP_AUTHORIZATION=f"Bearer {uploader_token}")
    assert denied.status_code == 403 and "data managers" in denied.json()["detail"]
    done = client.post(f"/api/review/held/{held[0].pk}/reject",
                       HTTP_AUTHORIZATION=f"Bearer {manager_token}")
    assert done.json() == {"id": held[0].pk, "status": "rejected"}
    twice = client.post(f"/api/review/held/{held[0].pk}/release",
                        HTTP_AUTHORIZATION=f"Bearer {manager_token}")
    assert twice.status_code == 409
    assert HeldImage.objects.get(pk=held[0].pk).status == "rejected"


@pytest.fixture
def in_vault(keyring):
    person = people(1, seed=5)[0]
    pseudonym, digits = pseudonymise(person.nhs_number)
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, digits)})
    return pseudonym, digits


def test_vault_reveal_shows_the_number_once_and_audits_the_reason(client, make_user, in_vault, caplog):
    pseudonym, digits = in_vault
    manager = make_user("data-manager")
    client.force_login(manager)
    with caplog.at_level(logging.DEBUG):
        shown = client.post(reverse("figures:vault"),
                            {"pseudonym": pseudonym.lower(), "reason": "site query 42"})
    assert shown.status_code == 200 and digits in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    assert digits not in caplog.text
    event = AuditEvent.objects.get(action="vault.reveal")
    assert (event.username, event.pseudonym, event.reason) == (manager.username, pseudonym, "site query 42")
    assert digits not in str(event.detail)
    # Nothing kept for a later page: the form is empty again.
    assert digits not in client.get(reverse("figures:vault")).content.decode()


def test_vault_reveal_needs_a_reason_and_a_known_pseudonym(client, make_user, in_vault):
    pseudonym, digits = in_vault
    client.force_login(make_user("data-manager"))
    no_reason = client.post(reverse("figures:vault"), {"pseudonym": pseudonym, "reason": "  "})
    assert no_reason.status_code == 400 and "Enter the reason" in no_reason.content.decode()
    assert digits not in no_reason.content.decode()
    unknown = client.post(reverse("figures:vault"),
                          {"pseudonym": "NCCID-AAAAAAAAAAAAAAAA", "reason": "check"})
    assert unknown.status_code == 400 and "No vault entry" in unknown.content.decode()
    assert not AuditEvent.objects.filter(action="vault.reveal").exists()


@pytest.mark.parametrize("role", ["uploader", "researcher"])
def test_other_roles_cannot_reveal(client, site, make_user, in_vault, role):
    pseudonym, digits = in_vault
    client.force_login(make_user(role, site=site if role == "uploader" else None))
    response = client.post(reverse("figures:vault"), {"pseudonym": pseudonym, "reason": "curious"})
    assert response.status_code == 403 and digits not in response.content.decode()
    assert not AuditEvent.objects.filter(action="vault.reveal").exists()
