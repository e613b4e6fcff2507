"""An implicit-VR file's "US or SS" elements inside sequences take their VR from the Pixel
Representation (pydicom resolves them from the nearest one): the stored header JSON says what
pydicom reads from the stored file, even after another file with the same sequence bytes but
the other Pixel Representation was remembered (element memo, JSON memo)."""

from __future__ import annotations

import json
from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.engine import parse_header
from nccid.warehouse.dicom_json import header_json

PSEUDONYM = "NCCID-TEST000000000001"
MAPPING = "00409096"  # Real World Value Mapping Sequence
FIRST_VALUE_MAPPED = "00409216"  # US or SS


def _implicit_file(sop_uid: str, signed: bool) -> bytes:
    """The same bytes in the sequence either way (-100 as SS is 65436 as US)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.999.1", "1.2.826.0.1.3680043.10.999.2"
    ds.Modality, ds.PatientID = "MR", "9990000018"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 1 if signed else 0
    item = Dataset()
    item.add_new(0x00409216, "SS" if signed else "US", -100 if signed else 65436)
    item.RealWorldValueIntercept, item.RealWorldValueSlope = 0.0, 1.0
    ds.RealWorldValueMappingSequence = [item]
    ds.PixelData = np.zeros(16, np.uint16).tobytes()
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _pydicoms_json(stored: bytes) -> dict:
    """What pydicom reads from the stored file, as JSON."""
    element = dcmread(BytesIO(stored))[0x00409096]
    return json.loads(json.dumps(element.to_json_dict(None, 1024)))


@pytest.mark.parametrize("order", [(True, False), (False, True)], ids=["signed first", "unsigned first"])
def test_element_by_element_json_follows_each_files_pixel_representation(kr, order):
    deid = Deidentifier(kr)
    for number, signed in enumerate(order * 2):  # twice over: the second time from the memo
        data = _implicit_file(f"1.2.826.0.1.3680043.10.999.{order[0]:d}{number}", signed)
        made = deidentify_by_element(deid, data, parse_header(data), PSEUDONYM)
        assert made is not None  # the memo's way, not the engine's
        parts, _, _, header = made
        stored = b"".join(bytes(part) for part in parts)
        mapped = json.loads(header)[MAPPING]
        assert mapped == _pydicoms_json(stored)
        assert mapped["Value"][0][FIRST_VALUE_MAPPED] == (
            {"vr": "SS", "Value": [-100]} if signed else {"vr": "US", "Value": [65436]})


@pytest.mark.parametrize("order", [(True, False), (False, True)], ids=["signed first", "unsigned first"])
def test_header_json_of_stored_files_follows_each_files_pixel_representation(kr, order):
    deid = Deidentifier(kr)
    for number, signed in enumerate(order * 2):
        data = _implicit_file(f"1.2.826.0.1.3680043.10.999.{order[0]:d}{number}", signed)
        parts, result = deid.deidentify_parts(data, pseudonym=PSEUDONYM, header=parse_header(data))
        stored = b"".join(bytes(part) for part in parts)
        want = _pydicoms_json(stored)
        assert json.loads(header_json(dataset=result.dataset))[MAPPING] == want
        assert json.loads(header_json(stored))[MAPPING] == want  # read back from the raw bytes
