"""Issue 2: only the data-manager role decrypts the vault. An administrator, who may also query
research data, could reveal the NHS number behind what they queried (CLI, portal)."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent
from nccid.identity.service import (
    VaultAccessDenied,
    encrypt_for_vault,
    pseudonymise,
    reveal,
    store_in_vault,
)

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

NUMBER = "9990000018"


@pytest.fixture
def pseudonym(keyring):
    name, _ = pseudonymise(NUMBER)
    store_in_vault({name: encrypt_for_vault(name, NUMBER)})
    return name


def test_an_administrator_is_refused_and_the_refusal_audited(make_user, pseudonym):
    admin = make_user("admin")
    with pytest.raises(VaultAccessDenied, match="only data managers"):
        reveal(admin, pseudonym, "site query 42")
    assert AuditEvent.objects.filter(action="vault.reveal.denied", username=admin.username).exists()


def test_a_data_manager_reveals(make_user, pseudonym):
    assert reveal(make_user("data-manager"), pseudonym, "site query 42") == NUMBER


def test_the_vault_page_refuses_an_administrator(client, make_user, pseudonym):
    client.force_login(make_user("admin"))
    assert client.get("/vault/").status_code == 403
    refused = client.post("/vault/", {"pseudonym": pseudonym, "reason": "site query 42"})
    assert refused.status_code == 403 and NUMBER not in refused.content.decode()
