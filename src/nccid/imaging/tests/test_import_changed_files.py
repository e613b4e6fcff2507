"""A big file is memory-mapped only on a local disk, and one whose size changes while it is
imported (rewritten in place, cut short) is named and not used: touching the pages a mapped
file lost is a SIGBUS, which would kill the whole import. The rest of the import completes."""

from __future__ import annotations

import mmap
import os

import pytest

from nccid.imaging import importer
from nccid.imaging.importer import CHANGED, _Mounts, collect, import_sources
from nccid.warehouse.models import ImageRecord

from .conftest import original_sop, write_study


def _stored(keyring, files) -> int:
    return ImageRecord.objects.filter(sop_uid__in=[keyring.uid(original_sop(f)) for f in files]).count()


def _big_and_small(tmp_path, person) -> tuple[list, list]:
    big = write_study(tmp_path / "big", person, count=3, rows=512, patient_id=person.nhs_number)
    small = write_study(tmp_path / "small", person, study=2, count=2,
                        patient_id=person.nhs_number)
    assert all(path.stat().st_size >= importer.MAP_FROM_BYTES for path in big)
    return big, small


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_file_cut_short_during_the_import_is_named_and_the_rest_completes(
        site, keyring, tmp_path, person_factory, monkeypatch):
    person = person_factory(81)
    (before_read, after_read, intact), small = _big_and_small(tmp_path, person)
    sources, problems = collect([tmp_path / "big", tmp_path / "small"])
    assert problems == [] and all(s.mappable for s in sources if s.path.parent.name == "big")
    read_one = importer._read_one

    def read_then_cut(item, archives):
        data = read_one(item, archives)
        if item.path == after_read:  # mapped by the reader, then cut before it is processed
            assert isinstance(data, mmap.mmap)
            os.truncate(after_read, 4096)
        return data

    monkeypatch.setattr(importer, "_read_one", read_then_cut)
    os.truncate(before_read, 4096)  # cut between collecting and reading

    summary = import_sources(sources, site)
    assert sorted(summary.rejected) == sorted([(str(before_read), CHANGED),
                                               (str(after_read), CHANGED)])
    assert summary.counts["stored"] == 3
    assert _stored(keyring, [intact, *small]) == 3


def _mountinfo(device: int, kind: str, point: str = "/srv/images") -> str:
    return (f"22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            f"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
            f"90 27 {os.major(device)}:{os.minor(device)} / {point} rw shared:7 master:2 - "
            f"{kind} server:/export rw\n")


@pytest.mark.parametrize(("kind", "mapped"), [
    ("ext4", True), ("xfs", True), ("nfs4", False), ("cifs", False), ("fuse.sshfs", False),
    ("9p", False), ("iso9660", False), ("some-new-fs", True),
])
def test_big_files_are_mapped_only_on_local_disks(tmp_path, person_factory, monkeypatch, kind,
                                                  mapped):
    person = person_factory(82)
    big, small = _big_and_small(tmp_path, person)
    device = os.stat(big[0]).st_dev
    monkeypatch.setattr(_Mounts, "read", classmethod(lambda cls: cls(_mountinfo(device, kind))))

    sources, _ = collect([tmp_path])
    by_path = {source.path: source for source in sources}
    assert [by_path[path].mappable for path in big] == [mapped] * 3
    assert not any(by_path[path].mappable for path in small)  # small files are always read
    data = by_path[big[0]].read({})
    assert isinstance(data, mmap.mmap) is mapped and bytes(data) == big[0].read_bytes()


def test_the_mount_table_is_read_by_device_then_by_the_longest_mount_point(tmp_path):
    table = _Mounts(_mountinfo(os.makedev(0, 99), "nfs4", point=r"/srv/pacs\040export"))
    assert table.filesystem(tmp_path / "x", os.makedev(0, 99)) == "nfs4"
    # A device the table does not list (a btrfs subvolume has its own): by the path.
    assert table.filesystem("/srv/pacs export/a/b.dcm", os.makedev(0, 7)) == "nfs4"
    assert table.filesystem("/srv/pacs exports/b.dcm", os.makedev(0, 7)) == "ext4"
    assert not table.local("/srv/pacs export/b.dcm", os.makedev(0, 7))
    assert not _Mounts("").local(tmp_path, os.makedev(0, 7))  # nothing known: read, not mapped
