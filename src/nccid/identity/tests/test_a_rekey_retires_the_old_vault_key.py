"""A vault re-key must retire the old vault key: once the retired key file and its copies are
destroyed, a vault backup from before the re-key is unreadable. That holds only when the vault
key is not derivable from the master key (which a re-key keeps: it makes the pseudonyms), so a
new installation's key file holds a random vault key from the start. A key file from before
that (no vault_key) still works, and its first re-key says plainly that older vault backups
stay readable."""

from __future__ import annotations

import json
import shutil
import sqlite3

from cryptography.exceptions import InvalidTag

from nccid.cli.tests.clirun import run_nccid
from nccid.clinical.tests.helpers import PEOPLE, sheet_of
from nccid.identity.keys import Keyring, create_key_file, load_keyring

PASSWORD = "Correct-Horse-Battery-9"
STAYS_READABLE = "vault backups made before this re-key can still be decrypted"


def test_a_new_key_file_holds_a_random_vault_key_not_derived_from_the_master_key(tmp_path):
    first, second = tmp_path / "a.key", tmp_path / "b.key"
    create_key_file(first)
    create_key_file(second)
    keyring = load_keyring(first)
    assert "vault_key" in json.loads(first.read_text())
    assert keyring.vault_fingerprint != Keyring(keyring.master).vault_fingerprint
    assert keyring.vault_fingerprint != load_keyring(second).vault_fingerprint


def test_a_key_file_without_a_vault_key_still_derives_it_from_the_master_key(tmp_path):
    path = tmp_path / "old.key"
    create_key_file(path)
    old_style(path)
    keyring = load_keyring(path)
    assert keyring.vault_key is None
    assert keyring.vault_fingerprint == Keyring(keyring.master).vault_fingerprint


def test_after_a_rekey_the_new_key_file_cannot_read_a_vault_backup_from_before_it(home, tmp_path):
    env = populate(home, tmp_path)
    backup = tmp_path / "vault-before-rekey.sqlite3"
    shutil.copy2(home / "vault.sqlite3", backup)

    rekeyed = rekey(env)
    assert rekeyed.code == 0, rekeyed.err
    assert STAYS_READABLE not in " ".join(rekeyed.out.split())
    (retired,) = home.glob("secret.key.retired-*")
    assert can_read(load_keyring(retired, copy=True), backup)  # the backup is read right
    retired.unlink()  # "destroy the retired file and the old copies"

    current = load_keyring(home / "secret.key")
    assert not can_read(current, backup)
    assert not can_read(Keyring(current.master), backup)  # nor with the master's sub-key


def test_the_first_rekey_of_an_old_key_file_says_older_vault_backups_stay_readable(home, tmp_path):
    old_style(home / "secret.key")  # as 'nccid init' wrote it before random vault keys
    env = populate(home, tmp_path)
    assert run_nccid("key", "check", env=env).code == 0
    backup = tmp_path / "vault-before-rekey.sqlite3"
    shutil.copy2(home / "vault.sqlite3", backup)

    first = rekey(env)
    assert first.code == 0, first.err
    assert STAYS_READABLE in " ".join(first.out.split())
    assert can_read(Keyring(load_keyring(home / "secret.key").master), backup)  # as it says

    second = rekey(env)  # the first's retired file kept (see test_rekeys_in_one_second_…)
    assert second.code == 0, second.err
    assert STAYS_READABLE not in " ".join(second.out.split())


def old_style(path) -> None:
    """Drop the vault key, as key files written before random vault keys were."""
    body = json.loads(path.read_text())
    body.pop("vault_key", None)
    path.write_text(json.dumps(body))


def populate(home, tmp_path) -> dict:
    env = {"NCCID_HOME": str(home)}
    assert run_nccid("site", "add", "RKEY", "--name", "Keyed", env=env).code == 0
    assert run_nccid("user", "add", "dm.jones", "--role", "data-manager", "--password-stdin",
                     stdin=PASSWORD + "\n", env=env).code == 0
    sheet = tmp_path / "sheet.xlsx"
    sheet.write_bytes(sheet_of("positive", [{"age": 40 + i} for i in range(2)], PEOPLE[:2]))
    imported = run_nccid("clinical", "import", str(sheet), "--site", "RKEY", "--kind", "positive",
                         env=env)
    assert imported.code == 0, imported.err
    return env


def rekey(env):
    return run_nccid("vault", "rekey", "--user", "dm.jones", "--password-stdin",
                     stdin=PASSWORD + "\n", env=env)


def can_read(keyring: Keyring, vault_backup) -> bool:
    """Whether every entry of a vault backup decrypts with ``keyring``'s vault key."""
    with sqlite3.connect(vault_backup) as db:
        entries = db.execute("select pseudonym, ciphertext from identity_vaultentry").fetchall()
    assert entries
    try:
        for pseudonym, ciphertext in entries:
            keyring.decrypt(bytes(ciphertext), pseudonym)
    except InvalidTag:
        return False
    return True

