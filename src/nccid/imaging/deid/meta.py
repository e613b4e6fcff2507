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
META_TAGS = frozenset(_TAGS.values())  # the elements the catalogue reads


def image_meta(ds: Dataset) -> ImageMeta:
    """Catalogue fields; call on a de-identified dataset only (UIDs are taken as they are)."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return image_meta_from({tag: element_text(ds, tag) for tag in META_TAGS}, syntax)


def image_meta_from(texts: dict[int, str], transfer_syntax: str) -> ImageMeta:
    """Catalogue fields from the texts of the ``META_TAGS`` elements (a missing one: "")."""

    def text(keyword: str) -> str:
        return texts.get(_TAGS[keyword], "")

    def day(keyword: str) -> date | None:
        value = text(keyword)
        try:
            return date(int(value[0:4]), int(value[4:6]), int(value[6:8]))
        except (ValueError, IndexError):
            return None

    def number(keyword: str) -> int | None:
        value = text(keyword)
        try:
            return int(value) if value else None
        except ValueError:
            return None

    return ImageMeta(
        sop_uid=text("SOPInstanceUID"),
        study_uid=text("StudyInstanceUID"),
        series_uid=text("SeriesInstanceUID"),
        sop_class_uid=text("SOPClassUID"),
        modality=text("Modality").upper(),
        transfer_syntax=transfer_syntax,
        study_date=day("StudyDate"),
        series_date=day("SeriesDate"),
        body_part=text("BodyPartExamined"),
        manufacturer=text("Manufacturer"),
        model=text("ManufacturerModelName"),
        rows=number("Rows"),
        columns=number("Columns"),
        pixel_spacing=text("PixelSpacing") or text("ImagerPixelSpacing"),
        view_position=text("ViewPosition"),
        patient_sex=text("PatientSex"),
        patient_age=text("PatientAge"),
    )
