"""The portal's /vault/ audits every refused POST (another role, a form sent incomplete, an
entry that cannot be decrypted), naming the pseudonym only when it is one; an unreadable
entry is a form error on the page, never a server error."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from nccid.accounts.models import AuditEvent
from nccid.identity.models import VaultEntry
from nccid.identity.service import encrypt_for_vault, pseudonymise, store_in_vault
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def in_vault(keyring):
    pseudonym, digits = pseudonymise(people(1, seed=15)[0].nhs_number)
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, digits)})
    return pseudonym, digits


def signed_in(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def denials() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="vault.reveal.denied"))


@pytest.mark.parametrize("role", ["researcher", "uploader"])
def test_a_post_by_another_role_is_refused_and_audited(make_user, site, in_vault, role):
    user = make_user(role, site=site if role == "uploader" else None)
    page = signed_in(user).post(reverse("figures:vault"), {"pseudonym": in_vault[0], "reason": "curious"})
    assert page.status_code == 403
    (event,) = denials()
    assert (event.username, event.pseudonym, event.reason) == (user.username, in_vault[0], "curious")
    assert "only data managers" in event.detail["cause"]


def test_a_number_posted_by_another_role_is_not_audited(make_user, in_vault):
    typed = people(1, seed=16)[0].nhs_number
    page = signed_in(make_user("researcher")).post(
        reverse("figures:vault"), {"pseudonym": typed, "reason": f"about {typed}"})
    assert page.status_code == 403
    (event,) = denials()
    assert event.pseudonym == "" and typed not in event.reason + str(event.detail)


def test_a_get_by_another_role_is_refused_without_an_audit_event(make_user, in_vault):
    assert signed_in(make_user("researcher")).get(reverse("figures:vault")).status_code == 403
    assert not AuditEvent.objects.exists()


def test_a_form_sent_without_a_reason_is_audited(make_user, in_vault):
    manager = make_user("data-manager")
    page = signed_in(manager).post(reverse("figures:vault"), {"pseudonym": in_vault[0], "reason": " "})
    assert page.status_code == 400
    (event,) = denials()
    assert (event.username, event.pseudonym) == (manager.username, in_vault[0])
    assert "Enter the reason" in event.detail["cause"]


@pytest.mark.parametrize("blob", [b"\x01\x02", b"\x00" * 40], ids=["short", "tampered"])
def test_an_unreadable_entry_is_a_form_error_and_audited(make_user, in_vault, blob):
    pseudonym, digits = in_vault
    VaultEntry.objects.filter(pseudonym=pseudonym).update(ciphertext=blob)
    page = signed_in(make_user("data-manager")).post(
        reverse("figures:vault"), {"pseudonym": pseudonym, "reason": "safety SQ-9"})
    assert page.status_code == 400
    body = page.content.decode()
    assert "damaged" in body and "restore the vault database from backup" in body
    assert digits not in body
    (event,) = denials()
    assert event.pseudonym == pseudonym and "damaged" in event.detail["cause"]
