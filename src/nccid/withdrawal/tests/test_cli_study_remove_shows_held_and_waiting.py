"""``nccid study remove`` shows, before it asks, everything the removal deletes: held and
waiting images too, not only the stored ones (as ``patient show`` lists a patient's)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from nccid.imaging.intake import ingest_many
from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt
from nccid.synthetic.dicom import synthetic_instance, to_bytes

from .conftest import PEOPLE

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PASSWORD = "Correct-Horse-Battery-9\n"


def _unlinked_study(site) -> str:
    """Sent by hospital number, no sheet naming it yet: two images wait for the link, a third
    is held for review (burned-in text). Its stored UID."""
    files = [synthetic_instance(PEOPLE[4], plant=False, study=5, instance=i) for i in (1, 2, 3)]
    files[2].BurnedInAnnotation = "YES"
    outcomes = ingest_many([to_bytes(ds) for ds in files], site, "test")
    assert [o.status for o in outcomes] == ["pending", "pending", "held"]
    return StudyReceipt.objects.get(site=site).study_uid


def test_the_confirmation_counts_held_and_waiting_images(site, manager, local_warehouse):
    from nccid.cli.main import typer_app

    study_uid = _unlinked_study(site)
    result = CliRunner().invoke(  # answered "no": nothing changes
        typer_app, ["study", "remove", study_uid, "--reason", "Name burned in", "--user",
                    manager.username, "--password-stdin"], input=PASSWORD + "n\n")
    assert result.exit_code == 1 and "nothing was changed" in str(result.exception)
    shown = {what: int(count) for what, count in re.findall(r"│ ([A-Z][a-z ]+?) +│ (\d+) ",
                                                            result.output)}
    assert shown == {"Stored images": 0, "Held for review": 1, "Waiting for a link": 2,
                     "Teaching cases": 0}
    assert f"Held of study {study_uid}:" in result.output
    assert (PendingImage.objects.count(), HeldImage.objects.filter(status="held").count()) == (2, 1)
