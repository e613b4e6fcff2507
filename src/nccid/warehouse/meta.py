"""What the warehouse needs to know of a de-identified image (taken from its header)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date


@dataclass(frozen=True)
class ImageMeta:
    sop_uid: str  # de-identified UIDs only
    study_uid: str
    series_uid: str
    sop_class_uid: str
    modality: str
    transfer_syntax: str
    study_date: date | None = None
    series_date: date | None = None
    body_part: str = ""
    manufacturer: str = ""
    model: str = ""
    rows: int | None = None
    columns: int | None = None
    pixel_spacing: str = ""
    view_position: str = ""
    patient_sex: str = ""
    patient_age: str = ""

    def as_dict(self) -> dict:
        return asdict(self)
