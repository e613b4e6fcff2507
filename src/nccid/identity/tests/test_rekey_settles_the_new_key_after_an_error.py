"""'nccid vault rekey' never deletes the new key blindly: after an error it looks at the vault.
Every entry under the new key (the commit went through, its acknowledgement was lost): the
new key is put in place. None: it is deleted. Cannot tell: it is kept and the message says
what to check. The error itself is one line."""

from __future__ import annotations

import pytest
from conftest import TEST_PASSWORD
from django.db import DatabaseError, OperationalError

from nccid.accounts.models import AuditEvent
from nccid.cli.tests.clirun import run_cli
from nccid.identity import service
from nccid.identity.models import VaultEntry
from nccid.synthetic.people import nhs_test_numbers

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
LOST = "server closed the connection unexpectedly\nThis probably means the server terminated"


@pytest.fixture
def key_file(keyring):
    """The session's key file, put back as it was afterwards (other tests rely on it)."""
    from nccid.config import get_settings

    path = get_settings().key_file
    original = path.read_bytes()
    yield path
    for leftover in [path.with_name(path.name + ".new"),
                     *path.parent.glob(path.name + ".retired-*")]:
        leftover.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    path.write_bytes(original)
    path.chmod(0o600)
    service.reset_keyring_cache()


@pytest.fixture
def stored(keyring):
    pairs = [service.pseudonymise(n) for n in nhs_test_numbers(2, start=6060)]
    service.store_in_vault({p: service.encrypt_for_vault(p, d) for p, d in pairs})
    return pairs


def rekey(monkeypatch, make_user):
    manager = make_user("data-manager")
    return run_cli(monkeypatch, "vault", "rekey", "--user", manager.username, "--password-stdin",
                   stdin=TEST_PASSWORD + "\n"), manager


def test_an_error_after_the_commit_puts_the_new_key_in_place(key_file, stored, make_user, monkeypatch):
    real = service.rekey_vault

    def committed_then_lost(new):
        real(new)
        raise OperationalError(LOST)

    monkeypatch.setattr(service, "rekey_vault", committed_then_lost)
    result, manager = rekey(monkeypatch, make_user)

    assert result.code == 0, result.err
    assert "re-key was committed" in result.err_text and "Traceback" not in result.err
    assert not key_file.with_name(key_file.name + ".new").exists()
    new_key = service.get_keyring().vault_fingerprint
    assert set(VaultEntry.objects.values_list("key_fingerprint", flat=True)) == {new_key}
    for pseudonym, number in stored:
        assert service.reveal(manager, pseudonym, "after the re-key") == number
    assert AuditEvent.objects.get(action="vault.rekey").detail["error_reported"].startswith(
        "OperationalError: server closed")


def test_an_error_before_the_commit_deletes_the_new_key(key_file, stored, make_user, monkeypatch):
    original = key_file.read_bytes()

    def lost(new):
        raise OperationalError(LOST)

    monkeypatch.setattr(service, "rekey_vault", lost)
    result, manager = rekey(monkeypatch, make_user)

    assert result.code == 1 and "Traceback" not in result.err
    assert "re-key failed (OperationalError: server closed the connection unexpectedly)" in result.err_text
    assert "terminated" not in result.err  # one line of the database's message
    assert not key_file.with_name(key_file.name + ".new").exists()
    assert key_file.read_bytes() == original
    assert service.reveal(manager, stored[0][0], "still readable") == stored[0][1]
    assert AuditEvent.objects.get(action="vault.rekey.failed").detail["outcome"] == "unchanged"


def test_when_the_vault_cannot_be_read_after_an_error_the_new_key_is_kept(key_file, stored, make_user,
                                                                          monkeypatch):
    original = key_file.read_bytes()

    def lost(new):
        raise OperationalError(LOST)

    def unreachable():
        raise DatabaseError("could not connect to server")

    monkeypatch.setattr(service, "rekey_vault", lost)
    monkeypatch.setattr(service, "vault_keys_in_use", unreachable)
    result, _ = rekey(monkeypatch, make_user)

    staged = key_file.with_name(key_file.name + ".new")
    assert result.code == 1 and "Traceback" not in result.err
    assert staged.exists() and (staged.stat().st_mode & 0o777) == 0o600
    assert key_file.read_bytes() == original
    assert "nccid key check" in result.err_text and str(staged) in result.err_text.replace("\n", "")
    assert AuditEvent.objects.get(action="vault.rekey.failed").detail["outcome"] == "unknown"
