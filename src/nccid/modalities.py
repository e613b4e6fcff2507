"""Which DICOM modalities are not images (PR, KO, SR...): a study counts under the modality of
its images, and such an object decides only for a study without images, alike in the summary,
the receipts and the catalogue. The list is data (``nccid/portal/data/modalities.json``); this
module is light on purpose (intake imports it: no pyarrow, DuckDB or Django). Also the codes
the DICOM standard defines for Modality (0008,0060), which a research cohort may name."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def non_image_modalities() -> tuple[str, ...]:
    """The modality codes of objects that are not images. Codes only (SQL names them)."""
    text = resources.files("nccid.portal").joinpath("data/modalities.json").read_text()
    codes = tuple(json.loads(text)["non_image"])
    if not all(code.isalnum() and code.isupper() for code in codes):
        raise ValueError("modalities.json: non_image holds upper-case DICOM modality codes only")
    return codes


@cache
def dicom_modality_codes() -> frozenset[str]:
    """The codes of Modality (0008,0060) the standard defines (CID 33, as pydicom carries it:
    CT, MR, CR, DX, PT, US...). Retired codes and vendors' own are not among them."""
    from pydicom.sr import codes

    return frozenset(code.value for code in codes.CID33.concepts.values())
