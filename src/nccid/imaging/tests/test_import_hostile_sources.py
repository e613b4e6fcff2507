"""What a folder or archive may hold besides DICOM files: pipes, devices, links (to folders,
looping, broken), damaged, encrypted, nested or oversized zip members, two members of one
name, a damaged zip directory, a disc's DICOMDIR. Each is named with a reason or skipped by
rule; nothing else in the import is lost, and nothing is read without bound."""

from __future__ import annotations

import os
import shutil
import zipfile

import pytest

from nccid.imaging import importer
from nccid.imaging.importer import collect, import_paths
from nccid.warehouse.models import ImageRecord

from .conftest import original_sop, write_study

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _stored(keyring, files) -> int:
    return ImageRecord.objects.filter(sop_uid__in=[keyring.uid(original_sop(f)) for f in files]).count()


def _reasons(summary) -> dict[str, str]:
    return {os.path.basename(name.split("!")[-1]): reason for name, reason in summary.rejected}


def test_pipes_devices_and_broken_links_are_named_and_linked_folders_followed_once(
        site, keyring, tmp_path, person_factory):
    person = person_factory(61)
    root = tmp_path / "in"
    good = write_study(root, person, count=2, patient_id=person.nhs_number)
    elsewhere = write_study(tmp_path / "elsewhere", person, study=2, count=2,
                            patient_id=person.nhs_number)
    os.mkfifo(root / "pipe.dcm")                       # reading it would wait for ever
    (root / "zero.dcm").symlink_to("/dev/zero")        # reading it would never end
    (root / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    (root / "linked-again").symlink_to(tmp_path / "elsewhere")  # the same folder twice
    (tmp_path / "elsewhere" / "loop").symlink_to(root)          # and a way back up
    (root / "DICOMDIR").write_bytes(b"\x00" * 200)     # a disc's index: not an image

    summary = import_paths([root], site)
    reasons = _reasons(summary)
    assert reasons == {"pipe.dcm": "not a regular file (a pipe, socket or device): not read",
                       "zero.dcm": "not a regular file (a pipe, socket or device): not read",
                       "gone.dcm": "broken symbolic link"}
    assert _stored(keyring, good + elsewhere) == 4
    assert summary.counts["stored"] == 4 and summary.counts.get("duplicate", 0) == 0


def _zip(path, members: list[tuple[str, bytes]], **options) -> None:
    with zipfile.ZipFile(path, "w", **options) as archive:
        for name, data in members:
            archive.writestr(name, data)


def test_one_damaged_zip_member_costs_that_member_only(site, keyring, tmp_path, person_factory):
    person = person_factory(62)
    files = write_study(tmp_path / "files", person, count=3, patient_id=person.nhs_number)
    archive = tmp_path / "in" / "study.zip"
    archive.parent.mkdir()
    _zip(archive, [(f.name, f.read_bytes()) for f in files], compression=zipfile.ZIP_DEFLATED)
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as handle:
        first = handle.infolist()[0]
    start = first.header_offset + 30 + len(first.filename)  # the member's compressed bytes
    data[start:start + 64] = b"\xff" * 64
    archive.write_bytes(bytes(data))

    summary = import_paths([archive.parent], site)
    assert _reasons(summary)[files[0].name].startswith("damaged zip member")
    assert _stored(keyring, files[1:]) == 2


def test_zip_members_are_read_by_entry_and_refused_when_nested_or_too_big(
        site, keyring, tmp_path, person_factory, monkeypatch):
    person = person_factory(63)
    one, two = write_study(tmp_path / "files", person, count=2, patient_id=person.nhs_number)
    (big,) = write_study(tmp_path / "big", person, study=2, count=1, rows=64,
                         patient_id=person.nhs_number)
    archive = tmp_path / "in" / "study.zip"
    archive.parent.mkdir()
    with pytest.warns(UserWarning, match="Duplicate name"):
        _zip(archive, [("img.dcm", one.read_bytes()), ("img.dcm", two.read_bytes()),
                       ("inner.zip", b"PK\x05\x06" + b"\x00" * 18), ("big.dcm", big.read_bytes())])
    monkeypatch.setattr(importer, "MAX_MEMBER_BYTES", big.stat().st_size - 1)

    summary = import_paths([archive], site)
    assert _stored(keyring, [one, two]) == 2  # two entries of one name: both read
    reasons = _reasons(summary)
    assert reasons["inner.zip"].startswith("a zip archive inside a zip archive")
    assert reasons["big.dcm"].startswith("zip member of") and _stored(keyring, [big]) == 0


def test_a_zip_of_a_folder_tree_with_folder_entries_is_imported(site, keyring, tmp_path,
                                                                 person_factory):
    """What `zip -r` and desktop "compress" tools make: the folders' own entries first."""
    person = person_factory(65)
    files = write_study(tmp_path / "tree" / "studies" / "one", person, count=2,
                        patient_id=person.nhs_number)
    archive = shutil.make_archive(str(tmp_path / "in" / "studies"), "zip", tmp_path / "tree")
    with zipfile.ZipFile(archive) as handle:
        assert handle.infolist()[0].is_dir() and handle.infolist()[0].header_offset == 0

    summary = import_paths([archive], site)
    assert summary.rejected == []
    assert _stored(keyring, files) == 2


def test_a_zip_whose_directory_does_not_cover_it_is_refused_whole(site, tmp_path, person_factory):
    """Cut at its end, an archive that stores another zip shows the inner one's directory:
    taking it would import part of the archive and say nothing of the rest."""
    person = person_factory(64)
    top, inside = write_study(tmp_path / "files", person, count=2, patient_id=person.nhs_number)
    inner = tmp_path / "inner.zip"
    _zip(inner, [(inside.name, inside.read_bytes())])
    outer = tmp_path / "in" / "outer.zip"
    outer.parent.mkdir()
    _zip(outer, [(top.name, top.read_bytes()), ("inner.zip", inner.read_bytes())])
    outer.write_bytes(outer.read_bytes()[:-30])

    sources, problems = collect([outer])
    assert sources == []
    assert problems == [(str(outer), "damaged zip archive (its directory does not cover the "
                                     "whole file)")]


def test_an_encrypted_zip_member_is_named_and_the_others_imported(site, keyring, tmp_path,
                                                                  person_factory):
    person = person_factory(65)
    plain, secret = write_study(tmp_path / "files", person, count=2, patient_id=person.nhs_number)
    archive = tmp_path / "study.zip"
    _zip(archive, [(plain.name, plain.read_bytes()), ("secret.dcm", secret.read_bytes())])
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as handle:
        local = handle.getinfo("secret.dcm").header_offset
    central = data.rindex(b"PK\x01\x02")  # the last directory entry is secret.dcm's
    data[local + 6] |= 1     # general purpose flag, bit 0: encrypted (local header)
    data[central + 8] |= 1   # ... and in the central directory
    archive.write_bytes(bytes(data))

    summary = import_paths([archive], site)
    assert _reasons(summary) == {"secret.dcm": "encrypted zip member"}
    assert _stored(keyring, [plain]) == 1
