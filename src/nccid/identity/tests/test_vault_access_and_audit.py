"""The key vault: data managers only, a reason always, every attempt audited, nothing plain."""

from __future__ import annotations

import pytest
from conftest import TEST_PASSWORD

from nccid.accounts.models import AuditEvent
from nccid.cli.tests.clirun import run_cli
from nccid.identity.models import VaultEntry
from nccid.identity.service import (
    ReasonRequired,
    UnknownPseudonym,
    VaultAccessDenied,
    encrypt_for_vault,
    pseudonymise,
    reveal,
    store_in_vault,
)
from nccid.synthetic.people import nhs_test_numbers, spaced

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def stored(keyring):
    """Three synthetic patients in the vault: [(pseudonym, number)]."""
    pairs = [pseudonymise(spaced(n)) for n in nhs_test_numbers(3, start=4242)]
    assert store_in_vault({p: encrypt_for_vault(p, d) for p, d in pairs}) == 3
    return pairs


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_data_manager_reveals_and_the_reveal_is_audited(stored, make_user):
    manager = make_user("data-manager")
    pseudonym, number = stored[0]
    assert reveal(manager, pseudonym.lower(), "  linkage query LQ-12 ") == number
    [event] = events("vault.reveal")
    assert (event.username, event.pseudonym, event.reason) == (manager.username, pseudonym,
                                                                "linkage query LQ-12")
    assert event.at is not None
    assert number not in str(event.detail)


@pytest.mark.parametrize("role", ["uploader", "researcher"])
def test_other_roles_are_denied_and_the_attempt_is_audited(stored, make_user, site, role):
    user = make_user(role, site=site)
    pseudonym, _ = stored[1]
    with pytest.raises(VaultAccessDenied, match="only data managers"):
        reveal(user, pseudonym, "curious")
    [event] = events("vault.reveal.denied")
    assert (event.username, event.pseudonym, event.reason) == (user.username, pseudonym, "curious")
    assert "only data managers" in event.detail["cause"]
    assert not events("vault.reveal")


def test_inactive_data_manager_is_denied(stored, make_user):
    manager = make_user("data-manager")
    manager.is_active = False
    manager.save()
    with pytest.raises(VaultAccessDenied):
        reveal(manager, stored[0][0], "left the programme")
    assert len(events("vault.reveal.denied")) == 1


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_reason_is_required_and_its_absence_is_audited(stored, make_user, reason):
    manager = make_user("data-manager")
    with pytest.raises(ReasonRequired, match="reason is required"):
        reveal(manager, stored[0][0], reason)
    [event] = events("vault.reveal.denied")
    assert event.pseudonym == stored[0][0] and event.username == manager.username


def test_a_reason_holding_a_patient_number_is_refused_and_not_stored(stored, make_user):
    manager = make_user("data-manager")
    pseudonym, number = stored[0]
    with pytest.raises(ReasonRequired, match="must not contain"):
        reveal(manager, pseudonym, f"checking {spaced(number)}")
    [event] = events("vault.reveal.denied")
    assert number not in event.reason and spaced(number) not in event.reason


def test_a_number_typed_where_the_pseudonym_goes_is_never_audited_or_echoed(stored, make_user):
    manager = make_user("data-manager")
    _, number = stored[0]
    with pytest.raises(UnknownPseudonym) as caught:
        reveal(manager, number, "typo")
    assert number not in str(caught.value)
    [event] = events("vault.reveal.denied")
    assert event.pseudonym == "" and number not in str(event.detail)


def test_unknown_pseudonym_is_audited(keyring, make_user):
    manager = make_user("data-manager")
    with pytest.raises(UnknownPseudonym):
        reveal(manager, "NCCID-AAAAAAAAAAAAAAAA", "query")
    [event] = events("vault.reveal.denied")
    assert event.pseudonym == "NCCID-AAAAAAAAAAAAAAAA"


def test_vault_rows_hold_ciphertext_only_and_live_in_the_vault_database(stored):
    from django.db import connections

    for pseudonym, number in stored:
        entry = VaultEntry.objects.get(pseudonym=pseudonym)
        raw = bytes(entry.ciphertext)
        assert number.encode() not in raw and number.encode("utf-16-le") not in raw
    assert "identity_vaultentry" in connections["vault"].introspection.table_names()
    assert "identity_vaultentry" not in connections["default"].introspection.table_names()
    assert "accounts_auditevent" not in connections["vault"].introspection.table_names()


def test_storing_twice_adds_nothing_and_large_batches_work(keyring):
    pairs = [pseudonymise(n) for n in nhs_test_numbers(5000, start=7000)]
    entries = {p: encrypt_for_vault(p, d) for p, d in pairs}
    assert store_in_vault(entries) == 5000
    assert store_in_vault(entries) == 0
    assert VaultEntry.objects.count() == 5000


# --- the commands ------------------------------------------------------------------------


def test_cli_reveal_prints_only_the_number_on_stdout_and_audits(stored, make_user, monkeypatch):
    manager = make_user("data-manager")
    pseudonym, number = stored[2]
    result = run_cli(monkeypatch, "vault", "reveal", pseudonym, "--reason", "subject access request",
                     "--user", manager.username, "--password-stdin", stdin=TEST_PASSWORD + "\n")
    assert result.code == 0, result.err
    assert result.out == number + "\n"
    assert number not in result.err
    [event] = events("vault.reveal")
    assert (event.username, event.pseudonym, event.reason) == (
        manager.username, pseudonym, "subject access request")


def test_cli_reveal_refuses_wrong_password_and_other_roles(stored, make_user, site, monkeypatch):
    manager = make_user("data-manager")
    uploader = make_user("uploader", site=site)
    args = ("vault", "reveal", stored[0][0], "--reason", "x", "--password-stdin")
    wrong = run_cli(monkeypatch, *args, "--user", manager.username, stdin="not-the-password\n")
    denied = run_cli(monkeypatch, *args, "--user", uploader.username, stdin=TEST_PASSWORD + "\n")
    for result in (wrong, denied):
        assert result.code == 1 and result.out == ""
        assert "Traceback" not in result.err and stored[0][1] not in result.err
    assert "wrong password" in wrong.err_text
    assert "only data managers" in denied.err_text
    refusals = events("vault.reveal.denied")
    assert [e.pseudonym for e in refusals] == [stored[0][0]] * 2
    assert [e.reason for e in refusals] == ["x", "x"]
    assert refusals[0].username.startswith(manager.username + " (cli:")
    assert not events("vault.reveal")


def test_cli_reveal_without_reason_fails_cleanly(stored, make_user, monkeypatch):
    manager = make_user("data-manager")
    result = run_cli(monkeypatch, "vault", "reveal", stored[0][0], "--reason", " ",
                     "--user", manager.username, "--password-stdin", stdin=TEST_PASSWORD + "\n")
    assert result.code == 1 and result.out == ""
    assert "reason is required" in result.err_text


def test_cli_audit_lists_recent_events_for_data_managers_only(stored, make_user, monkeypatch):
    manager = make_user("data-manager")
    researcher = make_user("researcher")
    reveal(manager, stored[0][0], "first look")
    listed = run_cli(monkeypatch, "vault", "audit", "--user", manager.username, "--password-stdin",
                     "--json", "--action", "vault.", stdin=TEST_PASSWORD + "\n")
    assert listed.code == 0, listed.err
    assert f'"pseudonym": "{stored[0][0]}"' in listed.out and "first look" in listed.out
    assert stored[0][1] not in listed.out
    refused = run_cli(monkeypatch, "vault", "audit", "--user", researcher.username,
                      "--password-stdin", stdin=TEST_PASSWORD + "\n")
    assert refused.code == 1 and "only data managers" in refused.err_text


def test_cli_rekey_reencrypts_everything_and_pseudonyms_stay(stored, make_user, monkeypatch, tmp_path):
    from nccid.config import get_settings
    from nccid.identity import service

    manager = make_user("data-manager")
    settings = get_settings()
    original = settings.key_file.read_bytes()
    old = service.get_keyring()
    before = {e.pseudonym: bytes(e.ciphertext) for e in VaultEntry.objects.all()}
    try:
        result = run_cli(monkeypatch, "vault", "rekey", "--user", manager.username,
                         "--password-stdin", stdin=TEST_PASSWORD + "\n")
        assert result.code == 0, result.err
        new = service.get_keyring()
        assert new.fingerprint == old.fingerprint and new.vault_fingerprint != old.vault_fingerprint
        for entry in VaultEntry.objects.all():
            assert bytes(entry.ciphertext) != before[entry.pseudonym]
            assert entry.key_fingerprint == new.vault_fingerprint
        for pseudonym, number in stored:
            assert reveal(manager, pseudonym, "after re-key") == number
            assert pseudonymise(number)[0] == pseudonym
        retired = list(settings.key_file.parent.glob(settings.key_file.name + ".retired-*"))
        assert len(retired) == 1 and retired[0].read_bytes() == original
        assert (retired[0].stat().st_mode & 0o777) == 0o600
        assert (settings.key_file.stat().st_mode & 0o777) == 0o600
        assert events("vault.rekey")[0].detail["entries"] == 3
    finally:  # the session's other tests expect the original key file
        settings.key_file.unlink()
        settings.key_file.write_bytes(original)
        settings.key_file.chmod(0o600)
        for path in settings.key_file.parent.glob(settings.key_file.name + ".retired-*"):
            path.unlink()
        service.reset_keyring_cache()
