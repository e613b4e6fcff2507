"""An image ``warehouse verify`` finds missing from the store cannot come back by being sent
again while its row says it is stored (the resend is a "duplicate"). A data manager forgets
it (``verify --forget-missing``, audited): its study's receipt asks the site to send it
again, and the same file sent again is stored; the catalogue no longer lists it meanwhile."""

from __future__ import annotations

import os

import pytest
from conftest import TEST_PASSWORD
from typer.testing import CliRunner

from nccid.accounts.models import AuditEvent
from nccid.cli.common import UserError
from nccid.cli.main import typer_app
from nccid.imaging.intake import ingest, original_sop_uid
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.catalogue import refresh_catalogue
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.repair import LOST_PROBLEM
from nccid.warehouse.service import verify_objects

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _verify(*options: str, password: str = TEST_PASSWORD):
    return CliRunner().invoke(typer_app, ["warehouse", "verify", "--all", *options],
                              input=password + "\n")


@pytest.fixture
def one_lost(site, keyring, local_warehouse):
    """A study of three images stored and catalogued, the object of one then lost: its file."""
    person = people(97, seed=7)[96]
    files = [to_bytes(synthetic_instance(person, modality="DX", study=5, instance=i,
                                         patient_id=person.nhs_number)) for i in (1, 2, 3)]
    assert {ingest(data, site, "test").status for data in files} == {IngestStatus.STORED}
    refresh_catalogue()
    lost = ImageRecord.objects.order_by("sop_uid").first()
    os.unlink(os.path.join(local_warehouse.root, lost.storage_key))
    return next(data for data in files if keyring.uid(original_sop_uid(data)) == lost.sop_uid)


def test_a_forgotten_image_sent_again_is_stored(site, one_lost, make_user):
    assert ingest(one_lost, site, "test").status is IngestStatus.DUPLICATE  # the gap
    manager = make_user("data-manager")

    result = _verify("--forget-missing", "--user", manager.username, "--password-stdin")
    assert result.exit_code == 1, result.output  # (it found an image missing)
    assert "forgot 1 missing image(s) (RTEST: 1)" in " ".join(result.output.split())
    event = AuditEvent.objects.get(action="warehouse.forget_missing")
    assert (event.username, event.detail["images"]) == (manager.username, 1)
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.stored, receipt.rejected, receipt.problem) == (2, 1, LOST_PROBLEM)
    assert verify_objects(None).ok  # the catalogue was refreshed without it

    assert ingest(one_lost, site, "test").status is IngestStatus.STORED
    receipt.refresh_from_db()
    assert (receipt.instances, receipt.stored, receipt.rejected, receipt.problem) == (3, 3, 0, "")
    refresh_catalogue()
    report = verify_objects(None)
    assert (report.ok, report.checked) == (True, 3)


def test_only_a_data_manager_may_forget(site, one_lost, make_user):
    researcher = make_user("researcher")
    result = _verify("--forget-missing", "--user", researcher.username, "--password-stdin")
    assert isinstance(result.exception, UserError)
    assert ImageRecord.objects.count() == 3
    assert AuditEvent.objects.filter(action="warehouse.forget_missing.denied").exists()
    assert isinstance(_verify("--forget-missing").exception, UserError)  # (no --user)


def test_verify_alone_says_how_to_repair(one_lost):
    result = _verify()
    assert result.exit_code == 1
    assert "--forget-missing" in result.output
    assert ImageRecord.objects.count() == 3
