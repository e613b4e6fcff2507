import pytest

from nccid.config import get_settings


@pytest.mark.django_db(databases=["default", "vault"])
def test_session_home_is_isolated_and_vault_is_separate(keyring):
    from django.db import connections

    from nccid.identity.models import VaultEntry
    from nccid.identity.service import store_in_vault

    assert "nccid-test-" in str(get_settings().home)
    store_in_vault({"NCCID-X": keyring.encrypt(b"9990000018", "NCCID-X")})
    assert VaultEntry.objects.count() == 1
    assert "identity_vaultentry" not in connections["default"].introspection.table_names()
