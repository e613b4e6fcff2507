"""The catalogue fields of a de-identified dataset (nccid.warehouse.meta.ImageMeta)."""

from __future__ import annotations

from datetime import date

from pydicom.dataset import Dataset

from nccid.warehouse.meta import ImageMeta


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:  # a malformed value must not stop cataloguing
        return ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _date(ds: Dataset, keyword: str) -> date | None:
    text = _text(ds, keyword)
    try:
        return date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword, None)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
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
