"""A key file copy from before 'nccid vault rekey' has the right master key but the old vault
key: every command refuses it (naming the vault key expected), so no reveal fails later and no
intake writes entries under a key the rest of the vault is not under."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from nccid.cli.tests.clirun import run_cli, run_nccid
from nccid.clinical.tests.helpers import PEOPLE, sheet_of
from nccid.identity.models import VaultEntry
from nccid.identity.service import encrypt_for_vault, pseudonymise, store_in_vault

PASSWORD = "Correct-Horse-Battery-9"


def vault_keys(home) -> set[str]:
    with sqlite3.connect(home / "vault.sqlite3") as db:
        return {k for (k,) in db.execute("select key_fingerprint from identity_vaultentry")}


def import_sheet(home, tmp_path, people, name):
    sheet = tmp_path / name
    sheet.write_bytes(sheet_of("positive", [{"age": 40 + i} for i in range(len(people))], people))
    return run_nccid("clinical", "import", str(sheet), "--site", "RKEY", "--kind", "positive",
                     env={"NCCID_HOME": str(home)})


def test_a_key_copy_from_before_a_rekey_is_refused_by_every_command(home, tmp_path):
    env = {"NCCID_HOME": str(home)}
    assert run_nccid("site", "add", "RKEY", "--name", "Keyed", env=env).code == 0
    assert run_nccid("user", "add", "dm.jones", "--role", "data-manager", "--password-stdin",
                     stdin=PASSWORD + "\n", env=env).code == 0
    assert import_sheet(home, tmp_path, PEOPLE[:2], "first.xlsx").code == 0
    copy = tmp_path / "custodian-copy.key"
    shutil.copy2(home / "secret.key", copy)
    rekeyed = run_nccid("vault", "rekey", "--user", "dm.jones", "--password-stdin",
                        stdin=PASSWORD + "\n", env=env)
    assert rekeyed.code == 0, rekeyed.err
    (current_vault_key,) = vault_keys(home)
    shutil.copy2(copy, home / "secret.key")  # "restored" from the stale copy

    checked = run_nccid("key", "check", env=env)
    assert checked.code == 1 and "Traceback" not in checked.err
    assert "a copy from before a 'nccid vault rekey'" in checked.err_text
    assert f"vault key {current_vault_key}" in checked.err_text
    refused = import_sheet(home, tmp_path, PEOPLE[2:3], "second.xlsx")
    assert refused.code == 1 and "before a 'nccid vault rekey'" in refused.err_text
    assert vault_keys(home) == {current_vault_key}  # no entry under the stale key


@pytest.mark.django_db(databases=["default", "vault"])
def test_key_check_lists_vault_entries_the_key_file_cannot_decrypt(keyring, monkeypatch):
    pseudonym, digits = pseudonymise(PEOPLE[3].nhs_number)
    VaultEntry.objects.create(pseudonym=pseudonym, ciphertext=b"x" * 40, key_fingerprint="0123456789abcdef")
    later = [pseudonymise(p.nhs_number) for p in PEOPLE[4:6]]
    store_in_vault({p: encrypt_for_vault(p, d) for p, d in later})  # the newest entries are fine

    result = run_cli(monkeypatch, "key", "check")

    assert result.code == 1
    assert "1 under vault key 0123456789abcdef" in result.err_text
    assert f"holds vault key {keyring.vault_fingerprint}" in result.err_text
    assert digits not in result.err


@pytest.mark.django_db(databases=["default", "vault"])
def test_key_check_names_the_vault_key_when_all_is_well(keyring, monkeypatch):
    pairs = [pseudonymise(p.nhs_number) for p in PEOPLE[6:8]]
    store_in_vault({p: encrypt_for_vault(p, d) for p, d in pairs})
    result = run_cli(monkeypatch, "key", "check")
    assert result.code == 0, result.err
    assert f"vault key {keyring.vault_fingerprint}" in " ".join(result.out.split())
