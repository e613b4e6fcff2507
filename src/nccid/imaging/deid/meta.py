"""The catalogue fields of a de-identified dataset (nccid.warehouse.meta.ImageMeta)."""

from __future__ import annotations

from datetime import date

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from nccid.dicomvalues import element_text
from nccid.warehouse.meta import ImageMeta

_TAGS = {keyword: tag_for_keyword(keyword) for keyword in (
    "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "Modality",
    "StudyDate", "SeriesDate", "BodyPartExamined", "Manufacturer", "ManufacturerModelName",
    "Rows", "Columns", "PixelSpacing", "ImagerPixelSpacing", "ViewPosition", "PatientSex",
    "PatientAge")}


def _text(ds: Dataset, keyword: str) -> str:
    return element_text(ds, _TAGS[keyword])


def _date(ds: Dataset, keyword: str) -> date | None:
    text = _text(ds, keyword)
    try:
        return date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def image_meta(ds: Dataset) -> ImageMeta:
    """Catalogue fields; call on a de-identified dataset only (UIDs are taken as they are)."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return ImageMeta(
        sop_uid=_text(ds, "SOPInstanceUID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        modality=_text(ds, "Modality").upper(),
        transfer_syntax=syntax,
        study_date=_date(ds, "StudyDate"),
        series_date=_date(ds, "SeriesDate"),
        body_part=_text(ds, "BodyPartExamined"),
        manufacturer=_text(ds, "Manufacturer"),
        model=_text(ds, "ManufacturerModelName"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        pixel_spacing=_text(ds, "PixelSpacing") or _text(ds, "ImagerPixelSpacing"),
        view_position=_text(ds, "ViewPosition"),
        patient_sex=_text(ds, "PatientSex"),
        patient_age=_text(ds, "PatientAge"),
    )
