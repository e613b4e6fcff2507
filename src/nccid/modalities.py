"""Which DICOM modalities are not images (PR, KO, SR...): a study counts under the modality of
its images, and such an object decides only for a study without images, alike in the summary,
the receipts and the catalogue. The list is data (``nccid/portal/data/modalities.json``); this
module is light on purpose (intake imports it: no pyarrow, DuckDB or Django)."""

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
