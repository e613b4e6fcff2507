"""A key file is written through a hidden temporary (``.secret.key.new.<hex>.tmp``, say) that
is removed in a ``finally``, which a killed process never runs: a re-key killed at the wrong
moment left a full copy of a key file hidden beside it, which destroying the retired file did
not remove. 'nccid key check' and 'nccid vault rekey' remove such temporaries, and only those."""

from __future__ import annotations

import os
import shutil

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.identity import keys

PASSWORD = "Correct-Horse-Battery-9"
LEFT_BY_A_KILL = [
    ".secret.key.new.2e83f8afd402.tmp",  # staging the re-keyed file
    ".secret.key.retired-20261129T185515Z.00bf37818ab8.tmp",  # keeping the old one
    ".secret.key.retired-20261129T185515Z-02.5a0c1e9b77d2.tmp",  # a second one that second
    ".secret.key.0123456789ab.tmp",  # 'nccid init' writing the first one
]
NOT_OURS = [
    "secret.key.retired-20261129T185515Z",  # the operator's to destroy, once copies are replaced
    "secret.key.retired-20261129T185515Z-02",
    ".secret.key.notes.tmp",
    ".secret.key.new.not-hex-at-all.tmp",
    ".other.key.0123456789ab.tmp",
]


def key_check(env):
    return run_nccid("key", "check", env=env)


def vault_rekey(env):
    added = run_nccid("user", "add", "dm.jones", "--role", "data-manager", "--password-stdin",
                      stdin=PASSWORD + "\n", env=env)
    assert added.code == 0, added.err
    return run_nccid("vault", "rekey", "--user", "dm.jones", "--password-stdin",
                     stdin=PASSWORD + "\n", env=env)


@pytest.mark.parametrize("command", [key_check, vault_rekey], ids=["key check", "vault rekey"])
def test_temporaries_of_a_killed_key_write_are_removed(home, command):
    for name in LEFT_BY_A_KILL + NOT_OURS:
        shutil.copy2(home / "secret.key", home / name)

    result = command({"NCCID_HOME": str(home)})

    assert result.code == 0, result.err
    left = {path.name for path in home.iterdir()}
    assert not left & set(LEFT_BY_A_KILL)
    assert set(NOT_OURS) <= left
    said = " ".join(result.out.split())
    assert "Removed 4 temporary copies of a key file left by an interrupted write" in said
    assert all(name in said for name in LEFT_BY_A_KILL)


def test_nothing_is_said_when_there_is_nothing_to_remove(home):
    result = key_check({"NCCID_HOME": str(home)})
    assert result.code == 0, result.err
    assert "temporary" not in result.out


def test_a_write_whose_temporary_is_removed_meanwhile_still_writes_the_key(tmp_path, monkeypatch):
    """A concurrent 'nccid key check' may remove the temporary of a write under way."""
    path = tmp_path / "secret.key"
    real_link = os.link

    def removed_first(source, target):
        assert [p.name for p in keys.remove_key_temporaries(path)] == [os.path.basename(source)]
        return real_link(source, target)

    monkeypatch.setattr(keys.os, "link", removed_first)
    keys.create_key_file(path)

    assert keys.load_keyring(path).vault_key is not None
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]
