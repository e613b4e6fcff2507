"""Zip archives that declare far more than they hold: entries sharing or overlapping one
compressed stream, members inflating beyond any image's ratio, archives declaring more in
all than one import reads. Each is refused before anything is inflated, with a reason that
names the archive (and the member); the rest of the import goes on."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib

import pytest

from nccid.imaging import importer
from nccid.imaging.importer import collect, import_paths
from nccid.warehouse.models import ImageRecord

from .conftest import original_sop, write_study

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _stored(keyring, files) -> int:
    return ImageRecord.objects.filter(sop_uid__in=[keyring.uid(original_sop(f)) for f in files]).count()


def _zip(path, members: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)


def _shared_stream_zip(path, data: bytes, entries: int) -> None:
    """The reviewer's bomb, small: one local header and one deflated stream, and ``entries``
    directory entries all named a.dcm, all pointing at it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = compressor.compress(data) + compressor.flush()
    name, crc = b"a.dcm", zlib.crc32(data)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(stream), len(data),
                        len(name), 0) + name
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(stream),
                        len(data), len(name), 0, 0, 0, 0, 0, 0) + name
    directory = entry * entries
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, len(directory),
                      len(local) + len(stream), 0)
    path.write_bytes(local + stream + directory + end)


def _stretch_first_entry(path) -> None:
    """The first entry's directory record declares compressed data running into the second
    entry's local header (the "overlapped" bomb, one stream read by two entries)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        second = archive.infolist()[1].header_offset
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<L", data, central + 20, second)  # compressed size: past the second
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("shape", ["shared stream", "overlapping entries"])
def test_entries_sharing_compressed_data_refuse_their_archive_and_the_rest_is_imported(
        site, keyring, tmp_path, person_factory, shape):
    person = person_factory(71)
    inside, beside = write_study(tmp_path / "files", person, count=2,
                                 patient_id=person.nhs_number)
    bomb = tmp_path / "in" / "bomb.zip"
    bomb.parent.mkdir()
    if shape == "shared stream":
        _shared_stream_zip(bomb, inside.read_bytes(), entries=50)
    else:
        _zip(bomb, [("a.dcm", inside.read_bytes()), ("b.dcm", inside.read_bytes())])
        _stretch_first_entry(bomb)
    (tmp_path / "in" / beside.name).write_bytes(beside.read_bytes())

    summary = import_paths([tmp_path / "in"], site)
    assert summary.rejected == [(f"{bomb}!a.dcm", "zip entry whose data overlaps another "
                                 "entry's (a zip bomb or a damaged archive): the archive is "
                                 "refused whole")]
    assert _stored(keyring, [beside]) == 1 and _stored(keyring, [inside]) == 0


def test_a_member_inflating_beyond_any_image_is_refused_and_its_neighbours_imported(
        site, keyring, tmp_path, person_factory):
    person = person_factory(72)
    image = write_study(tmp_path / "files", person, count=1, rows=512,
                        patient_id=person.nhs_number)[0]
    archive = tmp_path / "study.zip"
    blank = bytes(importer.RATIO_FROM_BYTES + 1)  # inflates about 1000:1
    _zip(archive, [(image.name, image.read_bytes()), ("blank.dcm", blank)])
    with zipfile.ZipFile(archive) as handle:
        image_info, blank_info = handle.infolist()
    assert image_info.file_size / image_info.compress_size < 2  # the synthetic corpus: ~1:1

    summary = import_paths([archive], site)
    reasons = {os.path.basename(name.split("!")[-1]): why for name, why in summary.rejected}
    assert reasons == {"blank.dcm": f"zip member inflating {blank_info.compress_size:,} bytes "
                                    f"to {len(blank):,}, over 200:1 (images compress far "
                                    "less): a zip bomb or a damaged archive"}
    assert _stored(keyring, [image]) == 1


def test_an_archive_declaring_more_than_the_limit_is_refused_whole_and_the_rest_imported(
        site, keyring, tmp_path, person_factory, monkeypatch):
    person = person_factory(73)
    zipped = write_study(tmp_path / "files", person, count=3, patient_id=person.nhs_number)
    loose = write_study(tmp_path / "in" / "loose", person, study=2, count=1,
                        patient_id=person.nhs_number)
    archive = tmp_path / "in" / "study.zip"
    _zip(archive, [(f.name, f.read_bytes()) for f in zipped])
    declared = sum(f.stat().st_size for f in zipped)
    monkeypatch.setattr(importer, "MAX_ARCHIVE_BYTES", declared - 1)

    summary = import_paths([tmp_path / "in"], site)
    assert summary.rejected == [(str(archive), f"zip archive declaring {declared:,} bytes "
                                 f"uncompressed, over the {declared - 1:,} of one archive: "
                                 "extract it and import the folder")]
    assert _stored(keyring, loose) == 1 and _stored(keyring, zipped) == 0


def test_ordinary_archives_pass_the_checks_with_every_member(tmp_path, person_factory):
    """Written with data descriptors (a streamed zip), stored or deflated, names repeated."""
    person = person_factory(74)
    files = write_study(tmp_path / "files", person, count=3, patient_id=person.nhs_number)
    streamed = tmp_path / "streamed.zip"
    with streamed.open("wb") as raw, zipfile.ZipFile(_Unseekable(raw), "w",
                                                     compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            with archive.open(path.name, "w") as member:
                member.write(path.read_bytes())
    stored = tmp_path / "stored.zip"
    with zipfile.ZipFile(stored, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        for path in files:
            archive.write(path, "same.dcm")

    with zipfile.ZipFile(streamed) as archive:
        assert all(info.flag_bits & 0x08 for info in archive.infolist())  # data descriptors
    sources, problems = collect([streamed, stored])
    assert problems == [] and len(sources) == 6


class _Unseekable:
    """A file zipfile cannot seek in: it writes each member's sizes after its data."""

    def __init__(self, raw) -> None:
        self._raw = raw

    def write(self, data) -> int:
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()
