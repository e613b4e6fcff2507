"""A key file that cannot be read is named as such ("permission denied", "a folder"), not as
"not a valid nccid key file"; a backup copy checked with 'nccid key fingerprint --file' is only
read, so the 0755 that FAT/exFAT media show (and cannot change) does not refuse it."""

from __future__ import annotations

import os
import pathlib

import pytest

from nccid.cli.tests.clirun import run_cli
from nccid.identity.keys import KeyFileError, create_key_file, load_keyring


def test_a_key_file_the_account_cannot_read_says_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "secret.key"
    create_key_file(path)
    real_read_text = pathlib.Path.read_text

    def refuse(self, *args, **kwargs):
        # What a root-owned 0600 file gives any other account (the tests may run as root).
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", refuse)
    with pytest.raises(KeyFileError) as caught:
        load_keyring(path)
    message = str(caught.value)
    assert f"cannot read key file {path} (key_file): permission denied" in message
    assert "not a valid" not in message


def test_a_folder_given_as_the_key_file_is_called_a_folder(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    with pytest.raises(KeyFileError) as caught:
        load_keyring(folder)
    assert f"cannot read key file {folder} (key_file): it is a folder" in str(caught.value)
    assert "not a valid" not in str(caught.value)


def test_a_backup_copy_with_mode_0755_is_fingerprinted(tmp_path, monkeypatch):
    copy = tmp_path / "usb" / "secret.key"
    create_key_file(copy)
    os.chmod(copy, 0o755)  # what a FAT/exFAT stick reports for every file

    result = run_cli(monkeypatch, "key", "fingerprint", "--file", str(copy))

    assert result.code == 0, result.err
    assert load_keyring(copy, copy=True).fingerprint in result.out
    with pytest.raises(KeyFileError, match="chmod 600"):  # the live key file keeps the rule
        load_keyring(copy)
