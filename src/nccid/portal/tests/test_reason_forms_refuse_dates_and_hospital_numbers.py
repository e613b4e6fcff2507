"""The pages that ask a data manager for a reason (reveal, withdraw, remove a study) say not
to write names, dates or hospital or NHS/CHI numbers, and refuse a reason holding a date or a
hospital number as a form error that never shows it back."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.accounts.models import AuditEvent
from nccid.identity.service import encrypt_for_vault, pseudonymise, store_in_vault
from nccid.imaging.intake import ingest_many
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.models import Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PERSON = people(1, seed=37)[0]
HINT = "No names, dates (of birth or any other), hospital or NHS/CHI numbers."
TYPED = [f"{PERSON.birth_date:%d/%m/%Y}", f"{PERSON.birth_date:%-d %b %Y}", PERSON.hospital_number]


@pytest.fixture
def in_vault(keyring):
    pseudonym, digits = pseudonymise(PERSON.nhs_number)
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, digits)})
    return pseudonym


@pytest.mark.parametrize("typed", TYPED)
def test_the_vault_form_refuses_such_a_reason_without_showing_it(client, make_user, in_vault,
                                                                 typed):
    client.force_login(make_user("data-manager"))
    page = client.post(reverse("figures:vault"), {"pseudonym": in_vault,
                                                  "reason": f"Mrs {PERSON.family_name}, {typed}"})
    body = page.content.decode()
    assert page.status_code == 400 and 'id="reason-error"' in body and "must not contain" in body
    assert typed not in body and PERSON.family_name not in body  # the whole reason is dropped
    denied = AuditEvent.objects.get(action="vault.reveal.denied")
    assert typed not in denied.reason and not AuditEvent.objects.filter(action="vault.reveal").exists()


@pytest.mark.parametrize("typed", TYPED)
def test_the_withdraw_form_refuses_such_a_reason_without_showing_it(client, make_user, keyring,
                                                                    typed):
    pseudonym = "NCCID-AAAAAAAAAAAAAAAA"
    Withdrawal.objects.create(pseudonym=pseudonym, requested_by="dm", reason="Objected")
    client.force_login(make_user("data-manager"))
    page = client.post(reverse("figures:withdraw"), {"patient": pseudonym, "step": "withdraw",
                                                     "reason": f"objected, {typed}"})
    body = page.content.decode()
    assert page.status_code == 400 and 'id="reason-error"' in body and "must not contain" in body
    assert typed not in body
    assert not AuditEvent.objects.filter(action__startswith="patient.withdraw").exists()


@pytest.fixture
def study_uid(site, keyring, local_warehouse):
    """A stored study of one image, as the remove-study page finds it."""
    outcomes = ingest_many([to_bytes(synthetic_instance(PERSON, patient_id=PERSON.nhs_number))],
                           site, "test")
    assert {o.status for o in outcomes} == {"stored"}
    return ImageRecord.objects.get().study_uid


def test_each_reason_hint_asks_for_no_names_dates_or_numbers(client, make_user, study_uid):
    pseudonym = "NCCID-AAAAAAAAAAAAAAAA"  # listed, so the withdraw page reaches its reason
    Withdrawal.objects.create(pseudonym=pseudonym, requested_by="dm", reason="Objected")
    client.force_login(make_user("data-manager"))
    pages = [client.get(reverse("figures:vault")),
             client.post(reverse("figures:withdraw"), {"patient": pseudonym}),
             client.post(reverse("figures:remove_study"), {"study": study_uid})]
    for page in pages:
        body = page.content.decode()
        assert page.status_code == 200 and 'id="reason-hint"' in body and HINT in body
