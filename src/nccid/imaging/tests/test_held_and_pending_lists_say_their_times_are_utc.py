"""``nccid images held`` and ``nccid images pending`` give their times in UTC and say so, as
every other table of the CLI does: an image received, or due to expire, at 00:30 on 1 June
(BST) is shown at 23:30 on 31 May (UTC), and the expiry with its time, not as a bare date a
day before the one the portal shows."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage, PendingImage
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

JUNE_FIRST_AFTER_MIDNIGHT = datetime(2026, 6, 1, 0, 30, tzinfo=ZoneInfo("Europe/London"))
SAME_MOMENT_IN_UTC = "2026-05-31 23:30"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables as wide as their rows, so that no cell is wrapped in the output read here."""
    from nccid.cli.common import console

    monkeypatch.setattr(console, "width", 200)


def _nccid(*args: str) -> str:
    from nccid.cli.main import typer_app

    result = CliRunner().invoke(typer_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def held_after_midnight(site, keyring, person_factory):
    burned = synthetic_instance(person_factory(81), modality="CR")
    burned.BurnedInAnnotation = "YES"
    assert ingest(to_bytes(burned), site, "test").status is IngestStatus.HELD
    HeldImage.objects.update(received_at=JUNE_FIRST_AFTER_MIDNIGHT)


@pytest.mark.parametrize("args, header", [(("images", "held"), "Oldest received (UTC)"),
                                          (("images", "held", "--site", "RTEST"), "Received (UTC)")])
def test_held_images_are_listed_with_their_utc_time(held_after_midnight, args, header):
    output = _nccid(*args)
    assert header in output
    assert SAME_MOMENT_IN_UTC in output


def test_pending_images_expire_at_a_utc_time(site):
    PendingImage.objects.create(site=site, hospital_hash="0" * 32, sop_uid="2.25.1",
                                study_uid="2.25.2", file_name="waiting", size=1, source="test",
                                expires_at=JUNE_FIRST_AFTER_MIDNIGHT)
    output = _nccid("images", "pending")
    assert "Oldest expires (UTC)" in output
    assert SAME_MOMENT_IN_UTC in output
