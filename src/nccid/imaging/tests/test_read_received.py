"""The node's structural check of a received file, made without joining file meta and
dataset: the same answer as read_header on the whole file, whatever the header's length."""

from __future__ import annotations

import struct
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataelem import DataElement

from nccid.imaging.intake import HEADER_PEEK, Rejected, read_header, read_received
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people


def _split(data: bytes) -> tuple[bytes, memoryview]:
    """(preamble, DICM and file meta; the dataset), as the node has them."""
    (meta_length,) = struct.unpack_from("<L", data, 140)
    end = 144 + meta_length
    return data[:end], memoryview(data)[end:]


def _file(rows: int, comments: str | None = None) -> bytes:
    ds = synthetic_instance(people(1, seed=4)[0], modality="CT", rows=rows, columns=rows,
                            plant=False)
    if comments is not None:  # Text Value (UT: any length), before the pixel data
        ds[0x0040A160] = DataElement(0x0040A160, "UT", comments)
    return to_bytes(ds)


@pytest.mark.parametrize("data", [
    _file(512),                                        # pixel data far beyond the first peek
    _file(16),                                         # the whole file within the first peek
    _file(512, comments="x" * (HEADER_PEEK * 2)),     # a header longer than the first peek
], ids=["big-pixels", "small-file", "long-header"])
def test_a_sound_file_reads_as_read_header_reads_it(data):
    head, body = _split(data)
    assert read_received(head, body).SOPInstanceUID == read_header(data).SOPInstanceUID


@pytest.mark.parametrize("cut", [
    lambda data: data[:-1000],                     # pixel data short of what the header declares
    lambda data: data[:len(_split(data)[0]) + 200],  # the dataset cut inside its header
], ids=["truncated-pixels", "truncated-header"])
def test_a_damaged_file_is_refused_with_read_headers_reason(cut):
    data = cut(_file(512))
    head, body = _split(data)
    with pytest.raises(Rejected) as whole:
        read_header(data)
    with pytest.raises(Rejected) as parts:
        read_received(head, body)
    assert str(parts.value) == str(whole.value)


def test_the_quick_sop_uid_read_matches_pydicom_or_declines(person_factory):
    """The resume check walks the file meta and the dataset's first elements as bytes: for
    every file pydicom's own test files hold it must give the SOP Instance UID both name, or
    None (then the file is parsed in full)."""
    import warnings

    import pydicom.data
    from pydicom import dcmread

    from nccid.imaging.intake import original_sop_uid

    checked = 0
    for path in sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        quick = original_sop_uid(data)
        if quick is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read = dcmread(path, stop_before_pixels=True, force=True)
        assert quick == str(read.file_meta.MediaStorageSOPInstanceUID).strip("\x00 "), path
        assert quick == str(read.SOPInstanceUID).strip("\x00 "), path
        checked += 1
    assert checked > 100
    person = person_factory(91)
    data = to_bytes(synthetic_instance(person, modality="CT"))
    assert original_sop_uid(data) == str(dcmread(BytesIO(data)).file_meta
                                         .MediaStorageSOPInstanceUID)
    assert original_sop_uid(data[:140]) is None          # cut inside the meta
    assert original_sop_uid(b"\x00" * 132) is None       # no DICM marker
    assert original_sop_uid(data[:132] + b"\x02\x00\x03\x00\x00\x00") is None  # not a VR


def test_the_quick_sop_uid_read_declines_when_meta_and_dataset_disagree(person_factory):
    from nccid.imaging.intake import original_sop_uid

    ds = synthetic_instance(person_factory(92), modality="CT")
    agreeing = to_bytes(ds)
    assert original_sop_uid(agreeing) == ds.SOPInstanceUID
    uid = ds.SOPInstanceUID.encode()
    in_meta = agreeing.index(uid)  # the file meta comes first
    other = uid[:-1] + (b"8" if uid[-1:] != b"8" else b"7")
    disagreeing = agreeing[:in_meta] + other + agreeing[in_meta + len(uid):]
    assert agreeing.index(uid, in_meta + 1) > in_meta  # the dataset still names the first
    assert original_sop_uid(disagreeing) is None
    with pytest.raises(Rejected, match="names another SOP instance"):
        read_header(disagreeing)
