"""Object keys of the warehouse, compatible with the national database's bucket layout.

Pure library. ``{set}/{folder}/<Pseudonym>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``, the header
as DICOM JSON under ``{set}/{folder}-metadata/…/<SOPUID>.json``, clinical records under
``{set}/data/<Pseudonym>/<kind>-<SITE>.json``. Every component is checked, so a value can never
climb out of its folder or collide with another kind of object. Beside the sets, outside the
national layout: ``catalogue/``, ``withdrawn/<Pseudonym>.json`` and
``withdrawn/studies/<StudyUID>.json`` (the markers of withdrawals and study removals,
``nccid.withdrawal.markers``), none of them research data.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

SETS = ("training", "validation")
CATALOGUE_PREFIX = "catalogue"
WITHDRAWN_PREFIX = "withdrawn"
REMOVED_STUDIES_PREFIX = f"{WITHDRAWN_PREFIX}/studies"
OTHER_FOLDER = "other"
RESERVED_FOLDERS = {"data"}  # clinical records live there: no modality may take it

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class LayoutError(ValueError):
    """A key component is malformed; the message names the component, not its value."""


@cache
def _folders() -> dict[str, str]:
    text = resources.files("nccid.warehouse").joinpath("data/modality_folders.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def modality_folder(modality: str | None) -> str:
    """DX, CR -> xray; CT -> ct; MR -> mri; others their own lower-case folder; unknown -> other."""
    code = (modality or "").strip().upper()
    if code in _folders():
        return _folders()[code]
    folder = re.sub(r"[^a-z0-9]+", "_", code.lower()).strip("_")
    if not folder:
        return OTHER_FOLDER
    if folder in RESERVED_FOLDERS:
        return f"modality_{folder}"
    return folder


def _check_set(set_name: str) -> str:
    if set_name not in SETS:
        raise LayoutError(f"set must be one of {', '.join(SETS)}")
    return set_name


def _check_uid(uid: str, what: str) -> str:
    if not uid or len(uid) > 64 or not _UID.match(uid):
        raise LayoutError(f"{what} is not a valid DICOM UID")
    return uid


def _check_segment(value: str, what: str) -> str:
    if not value or len(value) > 64 or not _SEGMENT.match(value):
        raise LayoutError(f"{what} is empty or holds characters not allowed in a key")
    return value


def _image_path(set_name: str, folder: str, pseudonym: str, study_uid: str, series_uid: str,
                sop_uid: str) -> str:
    return "/".join((
        _check_set(set_name), folder, _check_segment(pseudonym, "pseudonym"),
        _check_uid(study_uid, "Study Instance UID"), _check_uid(series_uid, "Series Instance UID"),
        _check_uid(sop_uid, "SOP Instance UID"),
    ))


def image_key(set_name: str, modality: str, pseudonym: str, study_uid: str, series_uid: str,
              sop_uid: str) -> str:
    return _image_path(set_name, modality_folder(modality), pseudonym, study_uid, series_uid, sop_uid) + ".dcm"


def metadata_key(set_name: str, modality: str, pseudonym: str, study_uid: str, series_uid: str,
                 sop_uid: str) -> str:
    folder = modality_folder(modality) + "-metadata"
    return _image_path(set_name, folder, pseudonym, study_uid, series_uid, sop_uid) + ".json"


def clinical_key(set_name: str, pseudonym: str, kind: str, site_code: str) -> str:
    return "/".join((
        _check_set(set_name), "data", _check_segment(pseudonym, "pseudonym"),
        f"{_check_segment(kind, 'record kind')}-{_check_segment(site_code, 'site code')}.json",
    ))


def withdrawal_marker_key(pseudonym: str) -> str:
    """``withdrawn/<pseudonym>.json``: the marker of a withdrawn patient, outside both sets."""
    return f"{WITHDRAWN_PREFIX}/{_check_segment(pseudonym, 'pseudonym')}.json"


def study_removal_marker_key(study_uid: str) -> str:
    """``withdrawn/studies/<StudyUID>.json``: the marker of a removed study (by its stored,
    keyed UID), outside both sets."""
    return f"{REMOVED_STUDIES_PREFIX}/{_check_uid(study_uid, 'Study Instance UID')}.json"
