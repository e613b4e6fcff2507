"""Key handling end to end, as operators meet it: separate processes, separate NCCID_HOMEs."""

from __future__ import annotations

import csv
import shutil
import sqlite3
import stat

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.identity.keys import create_key_file
from nccid.identity.tests.conftest import init
from nccid.synthetic.people import nhs_test_numbers, spaced

NUMBERS = nhs_test_numbers(5, start=60_606)


def link_pseudonyms(home, tmp_path) -> list[str]:
    source = tmp_path / "numbers.csv"
    if not source.exists():
        with open(source, "w", newline="") as handle:
            csv.writer(handle).writerows([["nhs_number"], *([spaced(n)] for n in NUMBERS)])
    target = home / "linked.csv"
    result = run_nccid("link", str(source), "-o", str(target), env={"NCCID_HOME": str(home)})
    assert result.code == 0, result.err
    with open(target, newline="") as handle:
        return [row["pseudonym"] for row in csv.DictReader(handle)]


def site_codes(home) -> list[str]:
    with sqlite3.connect(home / "nccid.sqlite3") as db:
        return [code for (code,) in db.execute("select code from accounts_site order by code")]


def test_same_key_file_gives_same_pseudonyms_across_sites_and_runs(home, tmp_path):
    site_a, site_b, elsewhere = home, tmp_path / "site_b", tmp_path / "elsewhere"
    site_b.mkdir()
    shutil.copy2(site_a / "secret.key", site_b / "secret.key")  # the custodian's copy
    init(site_b)
    init(elsewhere)
    first = link_pseudonyms(site_a, tmp_path)
    assert len(set(first)) == 5 and all(p.startswith("NCCID-") for p in first)
    assert link_pseudonyms(site_b, tmp_path) == first
    assert link_pseudonyms(site_a, tmp_path) == first  # a later run
    assert not set(link_pseudonyms(elsewhere, tmp_path)) & set(first)


def test_init_is_idempotent_and_never_replaces_the_key(template_home, home):
    key = home / "secret.key"
    assert stat.S_IMODE((template_home / "secret.key").stat().st_mode) == 0o600
    before = key.read_bytes()
    again = init(home)
    assert "Created key file" not in again.out
    assert key.read_bytes() == before
    assert sorted(p.name for p in home.glob("secret.key*")) == ["secret.key"]


def test_missing_key_after_data_exists_is_a_clear_error_and_no_new_key(home):
    nccid_home = home
    env = {"NCCID_HOME": str(nccid_home)}
    assert run_nccid("site", "add", "RKEY", "--name", "Keyed", env=env).code == 0
    (nccid_home / "secret.key").unlink()
    for args in (["init"], ["site", "add", "RNEW", "--name", "New"], ["serve", "--port", "1"]):
        result = run_nccid(*args, env=env)
        assert result.code == 1, args
        assert "missing but this installation already holds data" in result.err_text
        assert "restore the key file from backup" in result.err_text
        assert "Traceback" not in result.err
    assert not (nccid_home / "secret.key").exists()
    assert site_codes(nccid_home) == ["RKEY"]


def test_wrong_key_is_refused_at_start_up_and_nothing_changes(home, tmp_path):
    nccid_home = home
    env = {"NCCID_HOME": str(nccid_home)}
    other = tmp_path / "other"
    create_key_file(other / "secret.key")  # another installation's key
    assert run_nccid("site", "add", "RKEY", "--name", "Keyed", env=env).code == 0
    original = (nccid_home / "secret.key").read_bytes()
    (nccid_home / "secret.key").unlink()
    shutil.copy2(other / "secret.key", nccid_home / "secret.key")  # a restore of the wrong file
    for args in (["site", "add", "RNEW", "--name", "New"], ["init"],
                 ["link", str(other / "secret.key"), "-o", str(tmp_path / "x.csv")]):
        result = run_nccid(*args, env=env)
        assert result.code == 1, args
        assert "is not the key this installation was created with" in result.err_text
        assert "nothing was changed" in result.err_text and "Traceback" not in result.err
    assert site_codes(nccid_home) == ["RKEY"]
    assert not (tmp_path / "x.csv").exists()
    (nccid_home / "secret.key").write_bytes(original)
    assert run_nccid("key", "check", env=env).code == 0


def test_key_file_readable_by_others_stops_every_command(home):
    nccid_home = home
    (nccid_home / "secret.key").chmod(0o644)
    result = run_nccid("site", "list", env={"NCCID_HOME": str(nccid_home)})
    assert result.code == 1 and "chmod 600" in result.err_text and "Traceback" not in result.err


def test_fingerprint_identifies_a_backup_copy(home, tmp_path):
    nccid_home = home
    backup = tmp_path / "usb" / "nccid-secret.key"
    backup.parent.mkdir()
    shutil.copy2(nccid_home / "secret.key", backup)
    env = {"NCCID_HOME": str(nccid_home)}
    live = run_nccid("key", "fingerprint", env=env)
    copy = run_nccid("key", "fingerprint", "--file", str(backup), env=env)
    assert live.code == copy.code == 0
    assert live.out.splitlines()[1:] == copy.out.splitlines()[1:]
    assert "master_key" not in live.out


@pytest.mark.parametrize("command", [["vault", "audit", "--user", "nobody"], ["site", "list"]])
def test_commands_before_init_say_run_nccid_init(nccid_home, command):
    result = run_nccid(*command, stdin="x\n")
    assert result.code == 1 and "nccid init" in result.err_text and "Traceback" not in result.err


def test_encrypting_in_pieces_gives_a_token_decrypt_reads_and_binds_the_context():
    from cryptography.exceptions import InvalidTag

    from nccid.identity.keys import SEALED_OVERHEAD, Keyring

    keyring = Keyring(bytes(range(32)))
    assert len(keyring.encrypt(b"x" * 1000, "c", purpose="pending")) == 1000 + SEALED_OVERHEAD
    parts = [b"\x03\x04RTHnode", bytes(range(256)) * 4097, b"", b"tail"]
    nonce, encryptor = keyring.encryptor("segment-1:offset-8", purpose="spool")
    pieces = [nonce, *(encryptor.update(part) for part in parts), encryptor.finalize()]
    token = b"".join(pieces) + encryptor.tag
    assert len(token) == 12 + sum(map(len, parts)) + 16  # nonce, ciphertext, tag
    assert keyring.decrypt(token, "segment-1:offset-8", purpose="spool") == b"".join(parts)
    for context, purpose in (("segment-1:offset-9", "spool"), ("segment-1:offset-8", "vault")):
        with pytest.raises(InvalidTag):
            keyring.decrypt(token, context, purpose=purpose)
