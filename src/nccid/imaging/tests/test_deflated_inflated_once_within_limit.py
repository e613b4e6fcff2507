"""A Deflated Explicit VR Little Endian file is inflated by intake, a chunk at a time and never
beyond the instance limit, and handed on as Explicit VR Little Endian: pydicom and the
de-identifier never inflate it (pydicom inflated the whole stream at every parse: a 1 MB
deflate bomb cost the node 2 GB and its worker 4 GB)."""

from __future__ import annotations

import struct
import zlib

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from nccid.imaging import intake
from nccid.imaging.intake import Rejected, ingest, read_received
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes

LIMIT = 64 * 1024  # the instance limit, lowered: the bomb below inflates to 4 MB


def _deflated(person, **kw) -> bytes:
    ds = synthetic_instance(person, plant=False, **kw)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return to_bytes(ds)


def _bomb(person) -> bytes:
    """A deflated file whose dataset is a real header, then 4 MB of zeros in a private OB."""
    plain = _deflated(person)
    (meta_length,) = struct.unpack_from("<L", plain, 140)
    start = 144 + meta_length
    header = zlib.decompress(plain[start:], -zlib.MAX_WBITS).split(b"\xe0\x7f\x10\x00")[0]
    inflated = header + struct.pack("<HH2sHL", 0x0009, 0x1010, b"OB", 0, 4 << 20) + bytes(4 << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return plain[:start] + deflater.compress(inflated) + deflater.flush()


@pytest.fixture
def asked(monkeypatch) -> list[int]:
    """Every max_length intake asks of an inflater (0: unbounded), with the limit lowered."""
    monkeypatch.setattr(intake, "MAX_INFLATED_BYTES", LIMIT)
    monkeypatch.setattr(intake, "INFLATE_CHUNK", 16 * 1024)
    requests: list[int] = []
    real = zlib.decompressobj

    class Recording:
        def __init__(self, *args) -> None:
            self._inner = real(*args)

        def decompress(self, data, max_length: int = 0):
            requests.append(max_length)
            return self._inner.decompress(data, max_length)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    monkeypatch.setattr(intake.zlib, "decompressobj", Recording)
    return requests


@pytest.fixture
def pydicom_never_inflates(monkeypatch) -> None:
    import pydicom.filereader

    def refuse(*args, **kwargs):
        raise AssertionError("pydicom was given a deflated dataset to inflate")

    monkeypatch.setattr(pydicom.filereader.zlib, "decompress", refuse)


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_deflate_bomb_is_refused_without_inflating_beyond_the_limit(site, person_factory,
                                                                      asked):
    outcome = ingest(_bomb(person_factory(60)), site, "test")

    assert outcome.status is IngestStatus.REJECTED
    assert outcome.reason.startswith(f"deflated data inflates beyond {LIMIT:,} bytes")
    assert asked and 0 not in asked, "the inflater is always given a bound"
    assert sum(asked) <= LIMIT + 1, "never asked for more than the limit and one byte"
    assert StudyReceipt.objects.get(site=site).rejected == 1


def test_the_node_refuses_a_deflate_bomb_as_received(person_factory, asked):
    data = _bomb(person_factory(61))
    (meta_length,) = struct.unpack_from("<L", data, 140)
    head, body = data[:144 + meta_length], memoryview(data)[144 + meta_length:]
    parts = [body[:1000], body[1000:]]  # the stream may come in several buffers

    with pytest.raises(Rejected, match="deflated data inflates beyond"):
        read_received(head, parts)
    assert sum(asked) <= LIMIT + 1 and 0 not in asked


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_deflated_file_is_taken_in_inflated_once(site, person_factory, asked,
                                                   pydicom_never_inflates):
    person = person_factory(62)
    data = _deflated(person, patient_id=person.nhs_number, rows=16, columns=16)

    assert read_received(data[:144 + struct.unpack_from("<L", data, 140)[0]],
                         memoryview(data)[144 + struct.unpack_from("<L", data, 140)[0]:])
    outcome = ingest(data, site, "test")

    assert outcome.status is IngestStatus.STORED, outcome.reason
    assert StudyReceipt.objects.get(site=site).stored == 1


def test_a_cut_deflate_stream_is_refused_as_truncated(person_factory, asked):
    data = _deflated(person_factory(63), rows=16, columns=16)

    with pytest.raises(Rejected, match="truncated"):
        intake.read_header(data[:-40])


def test_the_inflation_limit_keeps_a_deflated_instance_within_the_memory_target():
    from nccid.imaging.fastpath import MAX_INSTANCE_BYTES

    # Taking a deflated file in holds its inflated bytes and pydicom's copy of its values.
    assert 2 * intake.MAX_INFLATED_BYTES < 500 * 10**6
    assert intake.MAX_INFLATED_BYTES <= MAX_INSTANCE_BYTES
