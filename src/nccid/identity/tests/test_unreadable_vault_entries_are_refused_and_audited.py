"""A vault entry that cannot be decrypted (damaged, or under another vault key) is a clear,
audited refusal naming the cause, never a traceback; a re-key stopped by one is audited."""

from __future__ import annotations

import pytest
from conftest import TEST_PASSWORD

from nccid.accounts.models import AuditEvent
from nccid.cli.tests.clirun import run_cli
from nccid.identity.models import VaultEntry
from nccid.identity.service import (
    VaultEntryDamaged,
    VaultKeyMismatch,
    encrypt_for_vault,
    pseudonymise,
    reveal,
    store_in_vault,
)
from nccid.synthetic.people import nhs_test_numbers

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def entry(keyring):
    pseudonym, digits = pseudonymise(nhs_test_numbers(1, start=5150)[0])
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, digits)})
    return pseudonym, digits


def damage(pseudonym: str, ciphertext: bytes | None = None, key_fingerprint: str | None = None):
    entry = VaultEntry.objects.get(pseudonym=pseudonym)
    if ciphertext is None:  # flip the last byte: the tag no longer matches
        ciphertext = bytes(entry.ciphertext)[:-1] + bytes([entry.ciphertext[-1] ^ 1])
    VaultEntry.objects.filter(pk=entry.pk).update(
        ciphertext=ciphertext, key_fingerprint=key_fingerprint or entry.key_fingerprint)


def denial(pseudonym: str) -> AuditEvent:
    return AuditEvent.objects.get(action="vault.reveal.denied", pseudonym=pseudonym)


@pytest.mark.parametrize("ciphertext", [b"\x01\x02", None], ids=["shorter-than-a-nonce", "tampered-tag"])
def test_a_damaged_entry_says_restore_the_vault_and_is_audited(entry, make_user, ciphertext):
    pseudonym, digits = entry
    damage(pseudonym, ciphertext)
    with pytest.raises(VaultEntryDamaged) as caught:
        reveal(make_user("data-manager"), pseudonym, "safety query SQ-3")
    message = str(caught.value)
    assert "damaged" in message and "restore the vault database from backup" in message
    assert "but the key file holds" not in message and digits not in message
    assert denial(pseudonym).detail["cause"] == message
    assert not AuditEvent.objects.filter(action="vault.reveal").exists()


def test_an_entry_under_another_vault_key_names_both_keys_and_is_audited(entry, make_user, keyring):
    pseudonym, _ = entry
    damage(pseudonym, key_fingerprint="0123456789abcdef")
    with pytest.raises(VaultKeyMismatch) as caught:
        reveal(make_user("data-manager"), pseudonym, "safety query SQ-4")
    assert "0123456789abcdef" in str(caught.value) and keyring.vault_fingerprint in str(caught.value)
    assert "restore the matching key file" in denial(pseudonym).detail["cause"]


def test_cli_reveal_of_a_damaged_entry_is_one_line_and_audited(entry, make_user, monkeypatch):
    pseudonym, digits = entry
    damage(pseudonym, b"\x00")
    manager = make_user("data-manager")
    result = run_cli(monkeypatch, "vault", "reveal", pseudonym, "--reason", "query 5",
                     "--user", manager.username, "--password-stdin", stdin=TEST_PASSWORD + "\n")
    assert result.code == 1 and "Traceback" not in result.err
    assert "damaged" in result.err_text and digits not in result.out + result.err
    assert denial(pseudonym)


def test_cli_rekey_stopped_by_a_damaged_entry_is_audited_and_changes_nothing(entry, make_user,
                                                                              monkeypatch):
    from nccid.config import get_settings

    pseudonym, _ = entry
    damage(pseudonym, b"\x00" * 3)
    key_file = get_settings().key_file
    original = key_file.read_bytes()
    manager = make_user("data-manager")
    result = run_cli(monkeypatch, "vault", "rekey", "--user", manager.username, "--password-stdin",
                     stdin=TEST_PASSWORD + "\n")
    assert result.code == 1 and "Traceback" not in result.err
    assert "re-key failed" in result.err_text and "damaged" in result.err_text
    assert "the vault is unchanged" in result.err_text
    assert key_file.read_bytes() == original
    assert not key_file.with_name(key_file.name + ".new").exists()
    failed = AuditEvent.objects.get(action="vault.rekey.failed")
    assert failed.username == manager.username and "damaged" in failed.detail["cause"]
    assert failed.detail["outcome"] == "unchanged"
