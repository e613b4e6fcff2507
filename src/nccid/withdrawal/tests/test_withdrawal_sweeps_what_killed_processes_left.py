"""A withdrawal removes what killed processes left that no row names, possibly the withdrawn
patient's: staging folders of exports killed mid-way (cohort tables and images) and encrypted
temporaries of writers killed mid-write among the waiting images."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nccid.research.staging import PREFIX, staging_folder, staging_root
from nccid.withdrawal.services import withdraw

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_a_withdrawal_removes_abandoned_export_staging_and_keeps_a_live_one(patients, manager):
    root = staging_root()
    with staging_folder(root) as live:  # an export running now keeps its folder
        # made after the live export's own sweep: only the withdrawal can remove it
        abandoned = root / f"{PREFIX}killed"  # no process holds its lock: a killed export's
        (abandoned / ".partial-x").mkdir(parents=True)
        (abandoned / ".partial-x" / "export.zip").write_bytes(patients[0].pseudonym.encode())

        withdraw(manager, patients[0].pseudonym, "site sent the wrong patient")

        assert live.exists()
        assert not abandoned.exists()


def test_a_withdrawal_removes_temporaries_killed_writers_left_among_waiting_images(patients,
                                                                                 manager):
    from nccid.config import get_settings
    from nccid.imaging import intake

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    folder = get_settings().pending_dir
    folder.mkdir(parents=True, exist_ok=True)
    left = folder / f".1.2.826.0.1.9.pending.{intake._HOST}.{dead.stdout.strip()}.140.tmp"
    left.write_bytes(b"encrypted bytes no row names")
    intake._swept_folders.add(folder)  # this process already swept at its first write

    withdraw(manager, patients[0].pseudonym, "site sent the wrong patient")

    assert not left.exists()
