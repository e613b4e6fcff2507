"""The folder of waiting images carries a marker from its first write, holding a token the
database records with the folder's path. At that path, a folder whose marker lacks the token
is not theirs (an unmounted disk's bare mount point, a folder renamed away), even when no
image waits: nothing is written there, nor is the folder made again, and a waiting file
missing from it is out of reach, never lost. With the marker, a missing file is lost however
many other files the folder holds: refused once, not waiting for ever. A folder at a new path
(moved on purpose) is taken as a new one; with nothing recorded (an installation from before
the token), a folder from before the marker that holds a waiting image's file is adopted, so
an installation upgrading goes on. An operator re-marks the right folder whose files were all
lost with 'nccid images pending --mark-folder'."""

from __future__ import annotations

import errno
import os

import pytest

from nccid.accounts.models import AuditEvent
from nccid.cli.tests.clirun import run_cli
from nccid.imaging.intake import (
    MARKER,
    PendingFolderError,
    ingest,
    outage_of,
    write_encrypted,
)
from nccid.imaging.linking import link_known
from nccid.imaging.models import PendingFolderMark, PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.pending import remove_leftover_files
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

from .test_linking_resumes_after_a_store_outage import _pending, _sheet_confirmed
from .test_linking_while_the_pending_folder_is_away import (
    _back,
    _renamed_away,
    _replaced_by_an_empty_folder,
)

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

LOST = "refused when its clinical record arrived: its waiting file was lost"


def _refusals() -> int:
    return AuditEvent.objects.filter(action="imaging.pending.refuse").count()


def _waits_refused(site, person) -> None:
    """A new image of ``person`` cannot be written to wait: an outage naming pending_dir."""
    data = to_bytes(synthetic_instance(person, study=9, instance=1, plant=False))
    outcome = ingest(data, site, "test")
    assert outcome.status is IngestStatus.REJECTED, outcome
    assert "check pending_dir" in outcome.outage and MARKER in outcome.outage, outcome.outage


def _from_before_tokens(folder) -> None:
    """What a version without the recorded token leaves: a marker without one, no record."""
    PendingFolderMark.objects.all().delete()
    (folder / MARKER).write_bytes(b"nccid keeps its waiting images in this folder.\n")


def _marker_token(folder) -> str:
    lines = (folder / MARKER).read_text().splitlines()
    return next(line.removeprefix("token: ") for line in lines if line.startswith("token: "))


def test_a_new_folder_is_marked_at_its_first_write(site, person_factory, pending_folder):
    assert not pending_folder.exists()
    _pending(site, person_factory(81), study=1, count=1)
    assert (pending_folder / MARKER).is_file()
    assert pending_folder.stat().st_mode & 0o777 == 0o700
    mark = PendingFolderMark.objects.get()
    assert (mark.path, mark.token) == (str(pending_folder), _marker_token(pending_folder))
    assert len(mark.token) == 32


def test_nothing_is_written_to_an_unmounted_disk_while_no_image_waits(
        site, keyring, person_factory, local_warehouse, pending_folder):
    """Marked, then every waiting image linked: the disk unmounted now leaves a bare mount
    point that must not be marked, or images written there would be hidden (and refused as
    lost when their record arrives) once the disk is back."""
    first, later = person_factory(92), person_factory(93)
    _pending(site, first, study=1, count=1)
    _sheet_confirmed(site, keyring, first)
    assert not PendingImage.objects.exists() and ImageRecord.objects.count() == 1

    _replaced_by_an_empty_folder(pending_folder)  # the disk unmounted, nothing waiting
    _waits_refused(site, later)
    assert list(pending_folder.iterdir()) == [] and not PendingImage.objects.exists()

    _back(pending_folder)  # mounted again: the node's spool sends the image again
    sops = _pending(site, later, study=9, count=1)
    _sheet_confirmed(site, keyring, later)
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) >= set(sops)
    assert _refusals() == 0


def test_a_folder_moved_on_purpose_is_taken_at_its_new_path(
        site, keyring, person_factory, local_warehouse, pending_folder, monkeypatch):
    from nccid.config import reset_settings_cache

    person, later = person_factory(94), person_factory(95)
    sops = _pending(site, person, study=1, count=2)
    moved = pending_folder.with_name("pending.new-disk")
    pending_folder.rename(moved)  # the operator moves the folder and its setting
    monkeypatch.setenv("NCCID_PENDING_DIR", str(moved))
    reset_settings_cache()
    sops += _pending(site, later, study=2, count=1)
    assert PendingFolderMark.objects.get().path == str(moved)
    _sheet_confirmed(site, keyring, person)
    _sheet_confirmed(site, keyring, later)
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == set(sops)

    empty = pending_folder.with_name("pending.empty")  # a new, empty one: nothing waits
    monkeypatch.setenv("NCCID_PENDING_DIR", str(empty))
    reset_settings_cache()
    _pending(site, person_factory(96), study=3, count=1)
    mark = PendingFolderMark.objects.get()
    assert (mark.path, mark.token) == (str(empty), _marker_token(empty))


def test_no_image_waits_in_the_bare_mount_point_of_an_unmounted_disk(
        site, keyring, person_factory, local_warehouse, pending_folder, monkeypatch):
    a, b = person_factory(82), person_factory(83)
    sops = _pending(site, a, study=1, count=2)
    _replaced_by_an_empty_folder(pending_folder)  # the disk unmounted
    _waits_refused(site, b)  # (the node keeps such a file in its spool)
    assert list(pending_folder.iterdir()) == []
    _sheet_confirmed(site, keyring, a)
    assert set(PendingImage.objects.values_list("sop_uid", flat=True)) == set(sops)
    assert StudyReceipt.objects.get().rejected == 0 and _refusals() == 0

    _back(pending_folder)  # mounted again
    assert remove_leftover_files() == 0
    assert link_known().linked == 2
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == set(sops)


def test_a_folder_renamed_away_is_not_made_again(site, person_factory, pending_folder):
    _pending(site, person_factory(84), study=1, count=1)
    _renamed_away(pending_folder)
    _waits_refused(site, person_factory(85))
    assert not pending_folder.exists()


def test_a_held_image_is_enough_to_refuse_a_folder_without_the_marker(
        site, person_factory, pending_folder):
    held = ingest(to_bytes(synthetic_instance(person_factory(86), modality="US", plant=False)),
                  site, "test")
    assert held.status is IngestStatus.HELD and not PendingImage.objects.exists()
    _replaced_by_an_empty_folder(pending_folder)
    _waits_refused(site, person_factory(87))


def test_the_file_of_the_only_waiting_image_is_lost_and_refused_once(
        site, keyring, person_factory, local_warehouse, pending_folder, monkeypatch):
    person = person_factory(88)
    _pending(site, person, study=1, count=1)
    (pending_folder / PendingImage.objects.get().file_name).unlink()
    _sheet_confirmed(site, keyring, person)
    assert not PendingImage.objects.exists()
    receipt = StudyReceipt.objects.get()
    assert (receipt.pending, receipt.rejected, receipt.problem) == (0, 1, LOST)
    assert _refusals() == 1
    linked = run_cli(monkeypatch, "images", "link")
    assert linked.code == 0, linked.out + linked.err
    assert _refusals() == 1


def test_a_folder_from_before_the_marker_is_adopted(
        site, keyring, person_factory, local_warehouse, pending_folder):
    person, other = person_factory(89), person_factory(90)
    sops = _pending(site, person, study=1, count=2)
    PendingFolderMark.objects.all().delete()
    (pending_folder / MARKER).unlink()  # written by a version without markers
    _pending(site, other, study=2, count=1)  # goes on: the folder holds a waiting file
    assert _marker_token(pending_folder) == PendingFolderMark.objects.get().token

    PendingFolderMark.objects.all().delete()
    (pending_folder / MARKER).unlink()
    lost = PendingImage.objects.get(sop_uid=sops[0])
    (pending_folder / lost.file_name).unlink()
    _sheet_confirmed(site, keyring, person)  # the other's file is there: adopted, then lost
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == {sops[1]}
    assert StudyReceipt.objects.get(study_uid=lost.study_uid).problem == LOST
    assert _marker_token(pending_folder) == PendingFolderMark.objects.get().token


def test_a_marker_from_before_the_token_is_given_one_and_recorded(
        site, person_factory, pending_folder):
    _pending(site, person_factory(97), study=1, count=1)
    _from_before_tokens(pending_folder)
    _pending(site, person_factory(98), study=2, count=1)
    assert _marker_token(pending_folder) == PendingFolderMark.objects.get().token
    assert "keeps its waiting images" in (pending_folder / MARKER).read_text()


def test_a_marker_without_the_recorded_token_is_not_the_folder(
        site, person_factory, pending_folder):
    """Another folder's marker (an older disk, a marker copied by hand) at the recorded path."""
    _pending(site, person_factory(99), study=1, count=1)
    (pending_folder / MARKER).write_text("token: 0123456789abcdef\n")
    _waits_refused(site, person_factory(100))


def test_a_folder_without_the_marker_holding_no_waiting_file_is_refused(
        site, person_factory, pending_folder):
    _pending(site, person_factory(91), study=1, count=1)
    for path in pending_folder.iterdir():
        path.unlink()
    stranger = pending_folder / "1.2.3.pending"
    stranger.write_bytes(b"no row names this file")
    with pytest.raises(PendingFolderError) as refused:
        write_encrypted("1.2.4.pending", b"bytes", site.code, "1.2.4")
    assert "check pending_dir" in outage_of(refused.value)
    assert sorted(os.listdir(pending_folder)) == ["1.2.3.pending"]


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "from-before-tokens"])
def test_a_folder_whose_files_were_all_lost_is_marked_by_its_operator(
        site, keyring, person_factory, local_warehouse, pending_folder, monkeypatch, recorded):
    """Nothing tells it from an unmounted disk's mount point, so the message says what to do;
    once the operator has marked it, the lost images are refused and intake goes on."""
    person = person_factory(89)
    _pending(site, person, study=1, count=2)
    if not recorded:
        PendingFolderMark.objects.all().delete()
    for path in pending_folder.iterdir():  # its files lost, marker and all
        path.unlink()
    data = to_bytes(synthetic_instance(person_factory(90), study=9, instance=1, plant=False))
    refused = ingest(data, site, "test")
    assert "run 'nccid images pending --mark-folder'" in refused.outage
    assert "is it the one folder every host shares?" in refused.outage

    marked = run_cli(monkeypatch, "images", "pending", "--mark-folder")  # what it says
    assert marked.code == 0, marked.out + marked.err
    assert _marker_token(pending_folder) == PendingFolderMark.objects.get().token
    assert ingest(data, site, "test").status is IngestStatus.PENDING
    _sheet_confirmed(site, keyring, person)
    assert _refusals() == 2
    assert PendingImage.objects.count() == 1  # the new image, written once the folder was marked


def test_the_operator_cannot_mark_a_missing_folder(pending_folder, monkeypatch):
    marked = run_cli(monkeypatch, "images", "pending", "--mark-folder")
    assert marked.code == 1 and "could not mark pending_dir" in marked.out + marked.err
    assert not pending_folder.exists() and not PendingFolderMark.objects.exists()


def test_a_marker_that_could_not_be_written_is_not_recorded(
        site, person_factory, pending_folder, monkeypatch):
    """A full disk at the first write: an outage then, and the folder taken at the next write
    (not refused for lacking the marker the database would otherwise expect)."""
    from nccid.imaging import intake

    def disk_full(folder, token):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(intake, "_write_marker", disk_full)
        with pytest.raises(PendingFolderError) as refused:
            write_encrypted("1.2.5.pending", b"bytes", site.code, "1.2.5")
    assert refused.value.errno == errno.ENOSPC and not PendingFolderMark.objects.exists()
    _pending(site, person_factory(101), study=1, count=1)
    assert _marker_token(pending_folder) == PendingFolderMark.objects.get().token
