"""A header of implausibly many elements is refused from a walk of its bytes, before pydicom
parses it (a million empty elements cost seconds of CPU and hundreds of MB to parse): every
element counts, at every depth, and each sequence item (a file of 100,000 small items in one
sequence cost 574 MB and 25 s to import, and was stored); so are sequences nested too deeply
for the parser and the de-identifier (which recurse per level)."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from nccid.imaging import intake
from nccid.imaging.intake import Rejected, ingest, ingest_many, read_received
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def _instance(syntax) -> Dataset:
    ds = synthetic_instance(people(1, seed=4)[0], plant=False, rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _with_empty_elements(data: bytes, count: int, implicit: bool) -> bytes:
    """``count`` empty private elements inserted before the pixel data, in tag order."""
    pixel = data.rfind(b"\xe0\x7f\x10\x00")
    pack = (lambda k: struct.pack("<HHI", 0x0011 + 2 * (k >> 16), k & 0xFFFF, 0)) if implicit \
        else (lambda k: struct.pack("<HH2sH", 0x0011 + 2 * (k >> 16), k & 0xFFFF, b"SH", 0))
    return data[:pixel] + b"".join(pack(k) for k in range(count)) + data[pixel:]


def _count_at_every_depth(ds: Dataset) -> int:
    """The header's elements at every depth and its sequences' items (pixel data aside)."""
    count = 0
    for elem in ds:
        if elem.tag == 0x7FE00010:
            continue
        count += 1
        if elem.VR == "SQ":
            count += len(elem.value) + sum(_count_at_every_depth(item) for item in elem.value)
    return count


def _both_reads(data: bytes) -> tuple:
    """Reading ``data`` whole (the importer) and as received (the node)."""
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    return (lambda: intake.read_header(data),
            lambda: read_received(data[:meta_end], [data[meta_end:]]))


@pytest.fixture
def never_parsed(monkeypatch):
    def parse_header(*args, **kwargs):
        raise AssertionError("parsed before the element count was checked")

    monkeypatch.setattr(intake, "parse_header", parse_header)
    monkeypatch.setattr(intake, "MAX_HEADER_ELEMENTS", 1_000)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_too_many_elements_are_refused_before_parsing(never_parsed, syntax):
    data = _with_empty_elements(to_bytes(_instance(syntax)), 1_000, syntax.is_implicit_VR)
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    for read in (lambda: intake.read_header(data),
                 lambda: read_received(data[:meta_end], [data[meta_end:]])):
        with pytest.raises(Rejected, match="more than 1,000 elements in the header"):
            read()


def _nested(undefined: bool) -> list[Dataset]:
    """40 items, each holding a sequence of 20 items: undefined lengths or defined ones."""
    items = []
    for number in range(40):
        inner = Dataset()
        inner.ReferencedSOPInstanceUID = f"1.2.3.{number}"
        inner.is_undefined_length_sequence_item = undefined and number % 2 == 0  # both kinds
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        item.ReferencedImageSequence = [inner] * 20
        item["ReferencedImageSequence"].is_undefined_length = undefined
        item.is_undefined_length_sequence_item = undefined
        items.append(item)
    return items


@pytest.mark.parametrize("undefined", [True, False], ids=["undefined", "defined"])
@pytest.mark.parametrize("syntax", SYNTAXES)
def test_items_and_their_elements_count_at_every_depth(monkeypatch, syntax, undefined):
    ds = _instance(syntax)
    ds.ReferencedImageSequence = _nested(undefined)
    ds["ReferencedImageSequence"].is_undefined_length = undefined
    data = to_bytes(ds)
    assert (b"\xfe\xff\xdd\xe0" in data) is undefined  # (delimited, or by their lengths)
    total = _count_at_every_depth(ds)
    assert total > 40 * 20 * 2  # the inner items and their elements
    monkeypatch.setattr(intake, "MAX_HEADER_ELEMENTS", total)
    assert intake._check_element_count(data) is True  # the walk reached the pixel data
    monkeypatch.setattr(intake, "MAX_HEADER_ELEMENTS", total - 1)
    with pytest.raises(Rejected, match="elements in the header"):
        intake._check_element_count(data)


def _with_items(data: bytes, count: int) -> bytes:
    """A Referenced Image Sequence of ``count`` small undefined-length items, before Patient's
    Name: the reviewers' file (100,000 such items in 7 MB)."""
    inner = (struct.pack("<HH2sH", 0x0008, 0x1150, b"UI", 26) + b"1.2.840.10008.5.1.4.1.1.1\0"
             + struct.pack("<HH2sH", 0x0008, 0x1155, b"UI", 16) + b"1.2.3.4.5.6.7.8\0")
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    sequence = (struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF) + item * count
                + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    at = data.find(b"\x10\x00\x10\x00PN")
    return data[:at] + sequence + data[at:]


def test_many_small_items_are_refused_before_parsing(never_parsed):
    data = _with_items(to_bytes(_instance(ExplicitVRLittleEndian)), 400)  # 1,200 elements
    for read in _both_reads(data):
        with pytest.raises(Rejected, match="more than 1,000 elements in the header"):
            read()


def _nested_to(depth: int, syntax) -> bytes:
    """The instance with a Content Sequence ``depth`` sequences deep, undefined lengths."""
    implicit = syntax.is_implicit_VR
    body = (struct.pack("<HHI", 0x0008, 0x0100, 2) if implicit
            else struct.pack("<HH2sH", 0x0008, 0x0100, b"SH", 2)) + b"X1"
    head = struct.pack("<HHI", 0x0040, 0xA730, 0xFFFFFFFF) if implicit \
        else struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    for _ in range(depth):
        body = (head + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + body
                + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    data = to_bytes(_instance(syntax))
    pixel = data.rfind(b"\xe0\x7f\x10\x00")
    return data[:pixel] + body + data[pixel:]


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_sequences_nested_too_deeply_are_refused_before_parsing(syntax, monkeypatch):
    """120 levels made the import's copy of the sequence fail (an internal error), 200 the
    parser (RecursionError), where the node stored it: both now refuse it, saying why."""
    assert intake._check_element_count(_nested_to(intake.MAX_SEQUENCE_DEPTH, syntax)) is True
    monkeypatch.setattr(intake, "parse_header", None)  # (never parsed)
    for depth in (intake.MAX_SEQUENCE_DEPTH + 1, 120, 250):
        for read in _both_reads(_nested_to(depth, syntax)):
            with pytest.raises(Rejected, match="sequences nested more than 32 deep"):
                read()


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_file_of_too_many_items_counts_on_its_studys_row(never_parsed, site, keyring):
    """Its Study Instance UID, after the sequence, is read from its bytes past the limits."""
    ds = _instance(ExplicitVRLittleEndian)
    outcome = ingest(_with_items(to_bytes(ds), 400), site, "node")
    assert outcome.status is IngestStatus.REJECTED and "1,000 elements" in outcome.reason
    receipt = StudyReceipt.objects.get(site=site)
    assert receipt.study_uid == keyring.uid(str(ds.StudyInstanceUID))
    assert (receipt.rejected, receipt.problem) == (1, outcome.reason)


# -- Explicit VR Big Endian (retired, still taken in): the same walk in its byte order. Its
# files went past both limits (a 210-deep nesting and a 200,001-element header were stored).


def _person_s(number: int) -> Dataset:
    """An instance of synthetic person ``number`` named by their NHS number (stored at once)."""
    person = people(number + 1, seed=5)[number]
    return synthetic_instance(person, patient_id=person.nhs_number, plant=False, rows=8,
                              columns=8)


def _big_endian(ds: Dataset, undefined: bool) -> bytes:
    """``ds`` written by pydicom as Explicit VR Big Endian, its sequences and items of
    undefined or defined lengths."""
    def mark(dataset: Dataset) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                elem.is_undefined_length = undefined
                for item in elem.value:
                    item.is_undefined_length_sequence_item = undefined
                    mark(item)

    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    mark(ds)
    data = to_bytes(ds)
    assert (b"\xff\xfe\xe0\xdd" in data) is undefined  # (delimited, big endian, or by lengths)
    return data


def _big_endian_nested(depth: int, undefined: bool, person: int = 0) -> bytes:
    """A big-endian instance whose Content Sequence nests ``depth`` sequences deep."""
    inner = Dataset()
    inner.CodeMeaning = "leaf"
    for _ in range(depth - 1):
        outer = Dataset()
        outer.ContentSequence = [inner]
        inner = outer
    ds = _person_s(person)
    ds.ContentSequence = [inner]
    return _big_endian(ds, undefined)


def _big_endian_elements(total: int, undefined: bool, person: int = 0) -> bytes:
    """A big-endian instance of exactly ``total`` elements at every depth (items counted):
    a Content Sequence of one-element items, an empty one for an odd remainder."""
    ds = _person_s(person)
    ds.ContentSequence = []
    missing = total - _count_at_every_depth(ds)
    items = []
    for _ in range(missing // 2):
        item = Dataset()
        item.CodeValue = "1"
        items.append(item)
    items += [Dataset()] * (missing % 2)
    ds.ContentSequence = items
    assert _count_at_every_depth(ds) == total
    return _big_endian(ds, undefined)


undefined_or_defined = pytest.mark.parametrize("undefined", [True, False],
                                               ids=["undefined", "defined"])


@undefined_or_defined
def test_big_endian_nesting_is_bounded_before_parsing(monkeypatch, undefined):
    deepest = _big_endian_nested(intake.MAX_SEQUENCE_DEPTH, undefined)
    assert intake._check_element_count(deepest) is True  # the walk reached the pixel data
    for read in _both_reads(deepest):
        assert read().ContentSequence
    monkeypatch.setattr(intake, "parse_header", None)  # (never parsed)
    for depth in (intake.MAX_SEQUENCE_DEPTH + 1, 210):
        for read in _both_reads(_big_endian_nested(depth, undefined)):
            with pytest.raises(Rejected, match="sequences nested more than 32 deep"):
                read()


@undefined_or_defined
def test_big_endian_elements_are_counted_before_parsing(never_parsed, undefined):
    """At the real limit: the walk alone (no file is parsed here)."""
    limit = 50_000
    intake.MAX_HEADER_ELEMENTS = limit  # (the fixture's 1,000 is undone after the test)
    assert intake._check_element_count(_big_endian_elements(limit, undefined)) is True
    for read in _both_reads(_big_endian_elements(limit + 1, undefined)):
        with pytest.raises(Rejected, match="more than 50,000 elements in the header"):
            read()


@pytest.mark.django_db(databases=["default", "vault"])
def test_big_endian_files_within_the_limits_are_stored_beyond_them_refused(site):
    stored = [_big_endian_nested(intake.MAX_SEQUENCE_DEPTH, True, person=1),
              _big_endian_elements(intake.MAX_HEADER_ELEMENTS, False, person=2)]
    refused = [_big_endian_nested(intake.MAX_SEQUENCE_DEPTH + 1, True, person=3),
               _big_endian_elements(intake.MAX_HEADER_ELEMENTS + 1, False, person=4)]
    outcomes = ingest_many(stored + refused, site, "node")
    assert [outcome.status for outcome in outcomes] == [IngestStatus.STORED] * 2 + [
        IngestStatus.REJECTED] * 2
    assert outcomes[2].reason == intake._TOO_DEEP.format(32)
    assert outcomes[3].reason == intake._TOO_MANY_ELEMENTS.format(50_000)
