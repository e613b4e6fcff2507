"""Byte-level proof: after numbers enter the vault, no database file holds one in plain form."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nccid.cli.tests.clirun import run_nccid
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import nhs_test_numbers, spaced

STORE = """
import json
from nccid.cli.common import setup_django
setup_django()
from nccid.accounts.services import add_user
from nccid.identity.service import encrypt_for_vault, pseudonymise, reveal, store_in_vault
from nccid.synthetic.people import nhs_test_numbers
pairs = [pseudonymise(n) for n in nhs_test_numbers(40, start=8080)]
store_in_vault({p: encrypt_for_vault(p, d) for p, d in pairs})
manager = add_user("dm.scan", "data-manager", "Winter-Lighthouse-42")
assert reveal(manager, pairs[0][0], "scan test") == pairs[0][1]
print(json.dumps([p for p, _ in pairs]))
"""


def test_vault_and_main_database_files_hold_no_plain_number(home):
    env = {"NCCID_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", STORE], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    pseudonyms = json.loads(proc.stdout)
    numbers = nhs_test_numbers(40, start=8080)
    files = [p for p in home.iterdir() if p.name.startswith(("nccid.sqlite3", "vault.sqlite3"))]
    assert {p.name for p in files} >= {"nccid.sqlite3", "vault.sqlite3"}
    # The scan sees the data: every pseudonym is in the vault file, one in the audit log.
    vault_bytes = b"".join(p.read_bytes() for p in files if p.name.startswith("vault"))
    assert all(p.encode() in vault_bytes for p in pseudonyms)
    main_bytes = b"".join(p.read_bytes() for p in files if p.name.startswith("nccid"))
    assert pseudonyms[0].encode() in main_bytes and b"scan test" in main_bytes
    assert find_leaks(files + [home / "logs"], numbers + [spaced(n) for n in numbers]) == []


def test_user_mistake_in_a_real_process_is_one_line_without_traceback(home):
    env = {"NCCID_HOME": str(home)}
    first = run_nccid("site", "add", "RDUP", "--name", "Dup", "--ae-title", "RDUP_AE", env=env)
    assert first.code == 0, first.err
    for args, message in [
        (["site", "add", "RDUP", "--name", "Again"], "site RDUP already exists"),
        (["site", "add", "ROTHER", "--name", "O", "--ae-title", "RDUP_AE"], "already belongs to"),
        (["user", "add", "u1", "--role", "boss", "--password-stdin"], "role must be one of"),
    ]:
        result = run_nccid(*args, stdin="Winter-Lighthouse-42\n", env=env)
        assert result.code == 1 and result.out == ""
        assert result.err.startswith("error: ") and message in result.err_text
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
