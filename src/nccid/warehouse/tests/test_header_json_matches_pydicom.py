"""The stored DICOM JSON header is pydicom's ``to_json_dict`` without bulk data, whether an
element's JSON was just converted or remembered from an earlier file."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread

from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier, DeidError
from nccid.imaging.deid.engine import _read_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.dicom_json import header_json

PYDICOM_FILES = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))


def _reference(ds) -> dict:
    """pydicom's own JSON of each element (none remembered), bulk data and pixel data left
    out, an element whose value cannot be converted left out."""
    body = {}
    for tag in ds.keys():
        if f"{tag:08X}" in ("7FE00008", "7FE00009", "7FE00010"):
            continue
        try:
            body[f"{tag:08X}"] = ds[tag].to_json_dict(
                bulk_data_element_handler=lambda _e: "omitted", bulk_data_threshold=1024)
        except Exception:  # noqa: BLE001, S112 - pydicom's own refusal: left out
            continue
        values = body[f"{tag:08X}"].get("Value")
        if ds[tag].VR != "SQ" and isinstance(values, list) and len(values) > 1:
            # PS3.18 F.2.5: an empty value of several is null (pydicom writes "")
            body[f"{tag:08X}"]["Value"] = [None if v == "" else v for v in values]

    def strip(node):
        if isinstance(node, dict):
            if node.get("vr") == "SQ" and node.get("Value") == []:
                return {"vr": "SQ"}  # PS3.18 F.2.5: an empty attribute has no Value
            return {k: strip(v) for k, v in node.items()
                    if not (isinstance(v, dict) and v.get("BulkDataURI") == "omitted")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(body)


def _fresh(data: bytes):
    return dcmread(BytesIO(data), stop_before_pixels=True, force=True)


@pytest.fixture
def deid() -> Deidentifier:
    return Deidentifier(Keyring(bytes(range(32))))


@pytest.mark.parametrize("modality", ["CT", "DX", "MR", "CR"])
def test_deidentified_series_headers_match_pydicom_on_every_file(deid, modality):
    person = people(2, seed=11)[1]
    for instance in range(1, 5):  # later files of the series come from the memo
        data = to_bytes(synthetic_instance(person, modality=modality, instance=instance,
                                           plant=True))
        ds, _ = _read_header(data)
        deid.deidentify(ds, pseudonym="NCCID-TEST000000000000")
        mine = json.loads(header_json(dataset=ds))
        assert mine == _reference(_fresh(deid_bytes(ds)))
        assert "7FE00010" not in mine


def deid_bytes(ds) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_pydicom_test_files_match_twice_over(deid):
    """Every readable test file of pydicom's, as read and after de-identification, twice
    (the second time from the memo)."""
    compared = 0
    for path in PYDICOM_FILES:
        try:
            ds, _ = _read_header(path.read_bytes())
            reference = _reference(_fresh(path.read_bytes()))
        except (DeidError, Exception):  # noqa: BLE001 - unreadable samples are not the point
            continue
        for _ in range(2):
            again, _ = _read_header(path.read_bytes())
            assert json.loads(header_json(dataset=again)) == reference, path.name
        compared += 1
        try:
            deid.deidentify(ds, pseudonym="NCCID-TEST000000000000")
        except DeidError:
            continue
        expected = _reference(ds)
        assert json.loads(header_json(dataset=ds)) == expected, path.name
    assert compared > 50


def test_a_changed_value_is_never_answered_from_the_memo(deid):
    person = people(1, seed=3)[0]
    data = to_bytes(synthetic_instance(person, modality="CT", plant=False))
    first = json.loads(header_json(dataset=_fresh(data)))
    ds = _fresh(data)
    ds.InstanceNumber = 977
    ds.StudyDescription = "CHANGED"
    second = json.loads(header_json(dataset=ds))
    assert second["00200013"]["Value"] == [977]
    assert second["00081030"]["Value"] == ["CHANGED"]
    assert first["00200013"]["Value"] != [977]


def test_making_json_never_switches_pydicoms_process_wide_validation(monkeypatch):
    """pydicom's to_json_dict(suppress_invalid_tags=True) sets a process-wide strict mode: a
    node thread receiving meanwhile would then refuse a sender's non-conformant UID."""
    from pydicom import config

    def forbidden():
        raise AssertionError("strict_reading switches validation for every thread")

    monkeypatch.setattr(config, "strict_reading", forbidden)
    person = people(1, seed=5)[0]
    ds = _fresh(to_bytes(synthetic_instance(person, modality="CT", plant=False)))
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.0100829.2.1"  # a leading zero
    body = json.loads(header_json(dataset=ds))
    assert body["0020000D"]["Value"] == ["1.2.826.0.1.3680043.9.7433.0100829.2.1"]
