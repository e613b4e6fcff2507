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
    "PatientAge", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")}
META_TAGS = frozenset(_TAGS.values())  # the elements the catalogue reads
# An enhanced multi-frame image keeps its Pixel Spacing in the functional groups: shared by
# every frame, or else per frame (PS3.3 C.7.6.16.2.1, Pixel Measures).
_FUNCTIONAL_GROUPS = frozenset({_TAGS["SharedFunctionalGroupsSequence"],
                                _TAGS["PerFrameFunctionalGroupsSequence"]})


def image_meta(ds: Dataset) -> ImageMeta:
    """Catalogue fields; call on a de-identified dataset only (UIDs are taken as they are)."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return image_meta_from({tag: meta_text(ds, tag) for tag in META_TAGS}, syntax)


def meta_text(ds: Dataset, tag: int) -> str:
    """The catalogue's text of one of ``META_TAGS``: the element's text, or for a functional
    groups sequence the Pixel Spacing of its first item's Pixel Measures ("" when none)."""
    if tag not in _FUNCTIONAL_GROUPS:
        return element_text(ds, tag)
    try:
        return element_text(ds[tag].value[0].PixelMeasuresSequence[0], _TAGS["PixelSpacing"])
    except (KeyError, IndexError, AttributeError, TypeError):
        return ""


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
        # In the patient's plane when the file says it; at the detector (Imager Pixel
        # Spacing, projection radiography) only failing that (docs/warehouse.md).
        pixel_spacing=(text("PixelSpacing") or text("SharedFunctionalGroupsSequence")
                       or text("PerFrameFunctionalGroupsSequence") or text("ImagerPixelSpacing")),
        view_position=text("ViewPosition"),
        patient_sex=text("PatientSex"),
        patient_age=text("PatientAge"),
    )
