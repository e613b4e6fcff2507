"""A vault database restored from a backup made before 'nccid vault rekey', beside the
current key file, is named as the older of the two (the re-key's audit event says which way
it went): the operator is told to restore a later vault backup, not to bring back the retired
key file (which keys.md says to destroy)."""

from __future__ import annotations

import shutil
import sqlite3

from nccid.cli.tests.clirun import run_nccid
from nccid.clinical.tests.helpers import PEOPLE
from nccid.identity.tests.test_key_copy_from_before_a_rekey_is_refused import (
    PASSWORD,
    import_sheet,
)


def test_a_vault_restored_from_before_a_rekey_asks_for_a_later_vault_backup(home, tmp_path):
    env = {"NCCID_HOME": str(home)}
    assert run_nccid("site", "add", "RKEY", "--name", "Keyed", env=env).code == 0
    assert run_nccid("user", "add", "dm.jones", "--role", "data-manager", "--password-stdin",
                     stdin=PASSWORD + "\n", env=env).code == 0
    assert import_sheet(home, tmp_path, PEOPLE[:2], "first.xlsx").code == 0
    shutil.copy2(home / "vault.sqlite3", tmp_path / "vault-backup.sqlite3")
    rekeyed = run_nccid("vault", "rekey", "--user", "dm.jones", "--password-stdin",
                        stdin=PASSWORD + "\n", env=env)
    assert rekeyed.code == 0, rekeyed.err
    with sqlite3.connect(home / "nccid.sqlite3") as db:
        (day,) = db.execute("select substr(at, 1, 10) from accounts_auditevent "
                            "where action = 'vault.rekey'").fetchone()
    for retired in home.glob("secret.key.retired-*"):
        retired.unlink()  # keys.md: destroy the retired file once the copies are replaced
    shutil.copy2(tmp_path / "vault-backup.sqlite3", home / "vault.sqlite3")

    for command in (["key", "check"], ["site", "list"]):
        result = run_nccid(*command, env=env)
        assert result.code == 1 and "Traceback" not in result.err
        assert f"the vault database (vault_database_url) is older than the re-key of {day}" \
            in result.err_text, result.err_text
        assert "restore a vault backup made after that re-key" in result.err_text
        assert "Restore the current key file" not in result.err_text
