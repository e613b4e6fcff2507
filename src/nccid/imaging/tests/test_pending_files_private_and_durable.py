"""Waiting (pending and held) images are encrypted files only their owner may read, and their
folder is synced after the rename so a power cut cannot lose the name of an acknowledged one."""

from __future__ import annotations

import dataclasses
import os
import stat

import pytest

from nccid.config import get_settings
from nccid.imaging import intake


@pytest.mark.django_db(databases=["default", "vault"])  # (is the folder theirs?)
def test_waiting_image_files_are_owner_only_and_their_folder_is_synced(keyring, monkeypatch,
                                                                       tmp_path):
    folder = tmp_path / "pending"
    settings = dataclasses.replace(get_settings(), pending_dir=folder)
    monkeypatch.setattr(intake, "get_settings", lambda: settings)
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(intake.os, "fsync", recording_fsync)
    old_umask = os.umask(0o022)  # a usual umask: the file must still be 0600
    try:
        intake.write_encrypted("1.2.3.pending", b"de-identified bytes", "RTEST", "1.2.3")
    finally:
        os.umask(old_umask)

    written = folder / "1.2.3.pending"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / intake.MARKER).stat().st_mode) == 0o600
    assert synced[-1] == str(folder), "the folder is synced after the rename"
    assert intake.read_encrypted("1.2.3.pending", "RTEST", "1.2.3") == b"de-identified bytes"
