"""A withdrawal removes the staging folders of exports killed mid-way (they hold cohort tables
and images, possibly the withdrawn patient's), not only the next process start or export."""

from __future__ import annotations

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
