"""TEMPORARY stand-ins for parts still being written (deid, warehouse, clinical services).

Used by ``deps`` only when the real module cannot be imported; deleted once they land.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from nccid.config import get_settings
from nccid.warehouse.meta import ImageMeta

_CLASS_UIDS = {0x00080016, 0x00081150, 0x00020002, 0x00020010, 0x00020012, 0x00081199}
_KEEP_TEXT = {0x00080060, 0x00080070, 0x00081090, 0x00180015, 0x00185101, 0x00280004,
              0x00080008, 0x00280030, 0x00181164, 0x00100040, 0x00101010, 0x00280101}


@dataclass
class DeidResult:
    dataset: Dataset
    held_reason: str = ""


class Deidentifier:
    def __init__(self, keyring, profile: str = "retain-dates") -> None:
        self.keyring = keyring

    def _walk(self, ds: Dataset) -> None:
        for elem in list(ds):
            if elem.tag.is_private:
                del ds[elem.tag]
            elif elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item)
            elif elem.VR == "UI" and elem.tag not in _CLASS_UIDS and elem.value:
                elem.value = self.keyring.uid(str(elem.value))
            elif elem.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "AE", "CS", "DS", "IS", "AS") \
                    and elem.tag not in _KEEP_TEXT:
                del ds[elem.tag]
            elif elem.tag == 0x00100030:
                elem.value = str(elem.value)[:4] + "0101" if elem.value else ""

    def deidentify_bytes(self, data: bytes, *, pseudonym: str, placeholder_id: str = ""):
        ds = dcmread(BytesIO(data))
        burned = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
        modality = ds.get("Modality", "")
        self._walk(ds)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Modality = modality
        ds.PatientID = placeholder_id or pseudonym
        ds.PatientName = placeholder_id or pseudonym
        ds.PatientIdentityRemoved = "YES"
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue(), DeidResult(ds, "burned-in annotation" if burned else "")


def assign_patient(ds: Dataset, pseudonym: str) -> None:
    ds.PatientID = pseudonym
    ds.PatientName = pseudonym


def _date(value) -> date | None:
    text = str(value or "")
    return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) >= 8 else None


def image_meta(ds: Dataset) -> ImageMeta:
    return ImageMeta(
        sop_uid=str(ds.SOPInstanceUID), study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID), sop_class_uid=str(ds.SOPClassUID),
        modality=str(ds.get("Modality", "")),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        study_date=_date(ds.get("StudyDate")),
    )


@dataclass
class StoredImage:
    record: object
    created: bool


def _path(sop_uid: str) -> Path:
    return Path(get_settings().storage_url) / "_fallback" / f"{sop_uid}.dcm"


def store_image(site, pseudonym, data: bytes, meta) -> StoredImage:
    path = _path(meta.sop_uid)
    if path.exists():
        return StoredImage(None, False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return StoredImage(None, True)


def image_exists(sop_uid: str) -> bool:
    return _path(sop_uid).exists()
