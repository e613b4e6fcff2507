"""A folder of waiting images that is briefly away (unmounted, renamed, replaced) when their
clinical record arrives is an outage, not a loss: the images stay waiting and the next linking
pass links them once it is back. Only a file missing from the folder they were written to
(marked, test_the_pending_folder_is_known_by_its_marker) is lost: that image is refused
once, on its receipt and in the audit trail. A
store answering "not found" (s3fs's reading of a missing bucket) never reads as a lost file.
``nccid images link`` says how many images it could not link, naming the setting, exit 1."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent
from nccid.cli.tests.clirun import run_cli
from nccid.imaging.linking import link_known
from nccid.imaging.models import PendingImage, StudyReceipt
from nccid.warehouse.models import ImageRecord

from .test_linking_resumes_after_a_store_outage import (
    _accept_writes,
    _pending,
    _refuse_writes,
    _sheet_confirmed,
)

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _renamed_away(folder):
    folder.rename(folder.with_name("pending.away"))


def _replaced_by_an_empty_folder(folder):  # what an unmounted mount point looks like
    folder.rename(folder.with_name("pending.away"))
    folder.mkdir()


def _back(folder):
    if folder.exists():
        folder.rmdir()
    folder.with_name("pending.away").rename(folder)


def _refusals() -> int:
    return AuditEvent.objects.filter(action="imaging.pending.refuse").count()


@pytest.mark.parametrize("away", [_renamed_away, _replaced_by_an_empty_folder])
def test_images_whose_folder_is_away_wait_and_are_linked_once_it_is_back(
        site, keyring, person_factory, local_warehouse, pending_folder, away):
    person = person_factory(61)
    sops = _pending(site, person, study=1, count=3)
    away(pending_folder)
    _sheet_confirmed(site, keyring, person)
    assert set(PendingImage.objects.values_list("sop_uid", flat=True)) == set(sops)
    receipt = StudyReceipt.objects.get()
    assert (receipt.pending, receipt.rejected) == (3, 0)
    assert not receipt.problem and _refusals() == 0
    assert PendingImage.objects.filter(claimed_at__isnull=False).count() == 0  # taken again now

    _back(pending_folder)
    assert link_known().linked == 3
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == set(sops)
    assert StudyReceipt.objects.get().status == "stored"


def test_a_file_missing_from_a_folder_holding_the_others_is_lost_and_refused_once(
        site, keyring, person_factory, local_warehouse, pending_folder):
    person, other = person_factory(62), person_factory(63)
    sops = _pending(site, person, study=1, count=2)
    _pending(site, other, study=2, count=1)  # still waiting: its file shows the folder is there
    lost = PendingImage.objects.get(sop_uid=sops[0])
    (pending_folder / lost.file_name).unlink()
    _sheet_confirmed(site, keyring, person)
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == {sops[1]}
    assert not PendingImage.objects.filter(sop_uid__in=sops).exists()
    receipt = StudyReceipt.objects.get(study_uid=lost.study_uid)
    assert (receipt.stored, receipt.pending, receipt.rejected) == (1, 0, 1)
    assert receipt.problem == "refused when its clinical record arrived: its waiting file was lost"
    event = AuditEvent.objects.get(action="imaging.pending.refuse")
    assert event.pseudonym == keyring.pseudonym(person.nhs_number)
    assert event.reason == "its waiting file was lost"
    assert event.detail == {"site": site.code}


def test_a_store_answering_not_found_leaves_the_images_waiting(
        site, keyring, person_factory, local_warehouse, pending_folder, monkeypatch):
    """s3fs raises FileNotFoundError for a missing bucket (NoSuchBucket); SeaweedFS makes a
    missing bucket again at the next write, so the store's answer is given here as s3fs's."""
    from nccid.imaging import deps

    def no_such_bucket(*args, **kwargs):
        raise FileNotFoundError("The specified bucket does not exist")

    person = person_factory(64)
    sops = _pending(site, person, study=1, count=2)
    with monkeypatch.context() as patch:
        patch.setattr(deps, "store_image", no_such_bucket)
        _sheet_confirmed(site, keyring, person)
        assert set(PendingImage.objects.values_list("sop_uid", flat=True)) == set(sops)
        assert StudyReceipt.objects.get().rejected == 0 and _refusals() == 0
        assert len(list(pending_folder.glob("*.pending"))) == 2
        assert link_known().failed == 2

    assert link_known().linked == 2
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == set(sops)


def test_images_link_says_how_many_it_could_not_link_and_why(
        site, keyring, person_factory, local_warehouse, monkeypatch):
    person = person_factory(65)
    _pending(site, person, study=1, count=3)
    _refuse_writes(local_warehouse)
    _sheet_confirmed(site, keyring, person)
    failed = run_cli(monkeypatch, "images", "link")
    assert failed.code == 1, failed.out + failed.err
    assert "Linked 0 pending image(s)." in failed.out
    line = failed.err_text
    assert "3 pending image(s) could not be linked" in line and "check storage_url" in line
    assert "they wait for the next 'nccid images link'" in line

    _accept_writes(local_warehouse)
    again = run_cli(monkeypatch, "images", "link")
    assert again.code == 0, again.out + again.err
    assert "Linked 3 pending image(s)." in again.out and "could not be linked" not in again.err


def test_images_link_names_pending_dir_when_the_folder_is_away(
        site, keyring, person_factory, local_warehouse, pending_folder, monkeypatch):
    person = person_factory(66)
    _pending(site, person, study=1, count=2)
    _replaced_by_an_empty_folder(pending_folder)
    _sheet_confirmed(site, keyring, person)
    failed = run_cli(monkeypatch, "images", "link")
    assert failed.code == 1, failed.out + failed.err
    line = failed.err_text
    assert "2 pending image(s) could not be linked" in line and "check pending_dir" in line
    assert PendingImage.objects.count() == 2


def test_purge_pending_reports_what_it_could_not_link_and_exits_1(
        site, keyring, person_factory, local_warehouse, monkeypatch):
    """The daily purge runs the same linking pass: a cron job watching its exit status must
    see the images it left waiting, as with 'nccid images link'."""
    person = person_factory(67)
    _pending(site, person, study=1, count=2)
    _refuse_writes(local_warehouse)
    _sheet_confirmed(site, keyring, person)
    failed = run_cli(monkeypatch, "images", "purge-pending")
    assert failed.code == 1, failed.out + failed.err
    assert "Linked 0 pending image(s)." in failed.out
    assert "Purged 0 pending image(s) past retention." in failed.out
    line = failed.err_text
    assert "2 pending image(s) could not be linked" in line and "check storage_url" in line
    assert PendingImage.objects.count() == 2

    _accept_writes(local_warehouse)
    again = run_cli(monkeypatch, "images", "purge-pending")
    assert again.code == 0, again.out + again.err
    assert "Linked 2 pending image(s)." in again.out
    assert not PendingImage.objects.exists()


@pytest.mark.parametrize("command", ["link", "purge-pending"])
def test_a_lost_waiting_file_is_reported_refused_saying_why_it_may_be(
        site, keyring, person_factory, local_warehouse, pending_folder, monkeypatch, command):
    person, other = person_factory(68), person_factory(69)
    sops = _pending(site, person, study=1, count=1)
    _pending(site, other, study=2, count=1)  # its file shows the folder is there
    _refuse_writes(local_warehouse)  # the sheet's own linking leaves the image waiting
    _sheet_confirmed(site, keyring, person)
    _accept_writes(local_warehouse)
    (pending_folder / PendingImage.objects.get(sop_uid=sops[0]).file_name).unlink()
    result = run_cli(monkeypatch, "images", command)
    assert result.code == 0, result.out + result.err
    assert ("Refused 1 pending image(s) (lost file or de-identification; their receipts and "
            "the audit trail say which).") in " ".join(result.out.split())
    assert _refusals() == 1
