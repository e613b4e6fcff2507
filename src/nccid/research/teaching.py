"""Teaching collections: data managers mark studies as cases; a collection exports as DICOM
plus an offline ``index.html`` with PNG thumbnails.

Only studies of sets handed out to researchers (training) can be marked. On export each case
is relabelled (``CASE001``…), every instance UID (nested references included) replaced by a
fresh one and private elements dropped, so the material cannot be linked back to the research
pseudonym through the catalogue.
"""

from __future__ import annotations

import html
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from django.db import IntegrityError, transaction
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.uid import UID_dictionary, generate_uid

from nccid.identity.reasons import identifier_in_reason

from .cohort import HANDED_OUT_SETS
from .dataset import preview_png
from .decoding import PixelDecodeError
from .models import TeachingCase, TeachingCollection
from .services import require_data_manager
from .source import Source, default_source
from .staging import Staging

THUMBNAIL = 256


class TeachingError(ValueError):
    pass


def add_case(user: Any, collection: str, pseudonym: str, study_uid: str, note: str = "",
             description: str = "", source: Source | None = None) -> TeachingCase:
    """Mark a study as a case of ``collection`` (made on first use); audited."""
    from nccid.accounts.models import audit

    require_data_manager(user)
    name = collection.strip()
    if not name:
        raise TeachingError("a collection needs a name")
    if problem := identifier_in_reason(note, "note"):  # a case's note goes out with it
        raise TeachingError(problem)
    source = source or default_source()
    con = source.connect()
    try:
        found = con.execute(
            "SELECT count(*) FROM images WHERE pseudonym = $p AND study_uid = $s "
            "AND list_contains($sets, set_name)",
            {"p": pseudonym, "s": study_uid, "sets": list(HANDED_OUT_SETS)}).fetchone()[0]
    finally:
        con.close()
    if not found:
        raise TeachingError("no such study of that pseudonym in the training set")
    with transaction.atomic():
        coll, _ = TeachingCollection.objects.get_or_create(
            name=name, defaults={"description": description, "created_by": user})
        try:
            with transaction.atomic():
                case = TeachingCase.objects.create(collection=coll, pseudonym=pseudonym,
                                                   study_uid=study_uid, note=note, added_by=user)
        except IntegrityError as exc:
            raise TeachingError(f"that study is already a case in {name!r}") from exc
    audit(user, "research.teaching.add", pseudonym=pseudonym, collection=name)
    return case


def list_collections() -> list[TeachingCollection]:
    return list(TeachingCollection.objects.select_related("created_by").prefetch_related("cases"))


def get_collection(name: str) -> TeachingCollection:
    coll = TeachingCollection.objects.filter(name=name.strip()).first()
    if coll is None:
        raise TeachingError(f"no teaching collection {name!r}")
    return coll


@dataclass
class CaseExport:
    number: int
    note: str
    modality: str
    study_date: str
    files: list[str]
    thumbnail: str | None


# Elements that name the patient or the study's booking, wherever they sit: the warehouse
# writes the pseudonym into every PatientID, nested ones too (a Request Attributes or Source
# Patient sequence), and the pseudonym finds the case in the catalogue.
_RELABELLED = ("PatientID", "PatientName")
_REMOVED = ("OtherPatientIDs", "OtherPatientIDsSequence", "IssuerOfPatientID",
            "AccessionNumber", "PatientBirthDate", "StudyID")
_TEXT_VRS = {"AE", "CS", "DS", "IS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}


def _relabel(ds: pydicom.Dataset, label: str, uids: dict[str, str], pseudonym: str) -> None:
    ds.remove_private_tags()
    ds.PatientID = ds.PatientName = label
    _relabel_nested(ds, label, pseudonym)
    _replace_uids(ds, uids)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"


def _relabel_nested(ds: pydicom.Dataset, label: str, pseudonym: str) -> None:
    """Relabel or remove the patient's elements at any depth, and replace the pseudonym
    wherever else a text element carries it."""
    for item in ds:
        if item.VR == "SQ":
            for child in item.value:
                _relabel_nested(child, label, pseudonym)
    for keyword in _REMOVED:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in _RELABELLED:
        if keyword in ds:
            setattr(ds, keyword, label)
    for item in ds:
        if item.VR in _TEXT_VRS and item.value is not None and pseudonym in str(item.value):
            item.value = _without(item.value, pseudonym, label)


def _without(value: Any, pseudonym: str, label: str) -> Any:
    if isinstance(value, MultiValue):
        return [str(v).replace(pseudonym, label) for v in value]
    return str(value).replace(pseudonym, label)


def _replace_uids(ds: pydicom.Dataset, uids: dict[str, str]) -> None:
    """Give every UI element, in sequences too, a fresh UID: the warehouse's UIDs are keyed and
    repeatable, so any one left (a ReferencedSOPInstanceUID, an IrradiationEventUID) would
    find the case's pseudonym in the catalogue. Well-known UIDs (SOP classes, transfer syntaxes,
    coding schemes) stay; ``uids`` maps old to new, so references within the case still agree."""
    def fresh(value: str) -> str:
        text = str(value)
        if not text or text in UID_dictionary:
            return value
        return uids.setdefault(text, generate_uid())

    def visit(_: pydicom.Dataset, element: DataElement) -> None:
        if element.VR != "UI" or element.value is None:
            return
        if isinstance(element.value, MultiValue):
            element.value = [fresh(v) for v in element.value]
        else:
            element.value = fresh(element.value)

    ds.walk(visit)


def _read_object(source: Source, key: str) -> pydicom.Dataset:
    """A case's image; one the store lacks (a withdrawal removes objects first) is a
    TeachingError naming the key (a pseudonym and keyed UIDs, no store path)."""
    try:
        with source.open_object(key) as handle:
            return pydicom.dcmread(handle)
    except FileNotFoundError as exc:
        raise TeachingError(f"{key}: missing from the warehouse") from exc
    except OSError as exc:
        raise TeachingError(f"{key}: could not be read from the warehouse "
                            f"({exc.__class__.__name__})") from exc


def _thumbnail(ds: pydicom.Dataset, path: Path, key: str) -> None:
    try:
        path.write_bytes(preview_png(ds, THUMBNAIL))
    except PixelDecodeError as exc:  # a broken stream the decoding child could not read
        raise TeachingError(f"{key}: {exc}") from exc


def export_collection(user: Any, name: str, directory: str | Path,
                      source: Source | None = None) -> Path:
    """Write the collection's cases and ``index.html`` to a new folder; audited."""
    from nccid.accounts.models import audit

    require_data_manager(user)
    coll = get_collection(name)
    destination = Path(directory).resolve()
    if destination.exists() and any(destination.iterdir()):
        raise TeachingError(f"{destination} already exists and is not empty")
    destination.parent.mkdir(parents=True, exist_ok=True)
    held = Staging(destination.parent)  # locked: a killed export's folder is swept later
    staging = held.path
    source = source or default_source()
    con = source.connect()
    try:
        cases = [_export_case(con, source, case, n, staging)
                 for n, case in enumerate(coll.cases.all(), start=1)]
        (staging / "index.html").write_text(_index(coll, cases), encoding="utf-8")
        if destination.exists():
            destination.rmdir()
        shutil.move(str(staging), destination)
    except Exception as exc:
        # Audited as an export's failure is: a TeachingError's message (a key, never a store
        # path), else the failure's kind.
        error = str(exc) if isinstance(exc, TeachingError) else exc.__class__.__name__
        audit(user, "research.teaching.export.failed", collection=coll.name, error=error)
        raise
    finally:
        held.release()  # removes the folder unless it became the destination
        con.close()
    audit(user, "research.teaching.export", collection=coll.name, cases=len(cases))
    return destination


def _export_case(con, source: Source, case: TeachingCase, number: int, root: Path) -> CaseExport:
    rows = con.execute(
        "SELECT storage_key, modality, study_date FROM images WHERE pseudonym = $p "
        "AND study_uid = $s AND list_contains($sets, set_name) ORDER BY series_uid, sop_uid",
        {"p": case.pseudonym, "s": case.study_uid, "sets": list(HANDED_OUT_SETS)}).fetchall()
    label = f"CASE{number:03d}"
    folder = root / label.lower()
    folder.mkdir()
    uids: dict[str, str] = {}
    files, thumbnail = [], None
    for index, (key, _, _) in enumerate(rows, start=1):
        ds = _read_object(source, key)
        _relabel(ds, label, uids, case.pseudonym)
        name = f"{label.lower()}/IMG{index:04d}.dcm"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        (root / name).write_bytes(buffer.getvalue())
        files.append(name)
        if thumbnail is None:
            thumbnail = f"{label.lower()}/thumbnail.png"
            _thumbnail(ds, root / thumbnail, key)
    modality = ", ".join(sorted({r[1] for r in rows}))
    study_date = str(rows[0][2]) if rows and rows[0][2] else ""
    return CaseExport(number, case.note, modality, study_date, files, thumbnail)


def _index(coll: TeachingCollection, cases: list[CaseExport]) -> str:
    rows = []
    for c in cases:
        thumb = (f'<img src="{html.escape(c.thumbnail)}" alt="Case {c.number} thumbnail" '
                 f'width="{THUMBNAIL}">' if c.thumbnail else "no image")
        links = " ".join(f'<a href="{html.escape(f)}">{html.escape(Path(f).name)}</a>' for f in c.files)
        rows.append(f"<tr><td>Case {c.number}</td><td>{thumb}</td><td>{html.escape(c.modality)}"
                    f"<br>{html.escape(c.study_date)}</td><td>{html.escape(c.note)}</td>"
                    f"<td>{links}</td></tr>")
    return f"""<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><title>{html.escape(coll.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:Arial,sans-serif;margin:2em;color:#212b32}}
table{{border-collapse:collapse}}td,th{{border:1px solid #d8dde0;padding:.5em;vertical-align:top}}</style>
</head><body><main><h1>{html.escape(coll.name)}</h1><p>{html.escape(coll.description)}</p>
<p>{len(cases)} case(s). Images are de-identified DICOM; open them in any DICOM viewer.</p>
<table><tr><th scope="col">Case</th><th scope="col">Image</th><th scope="col">Modality / date</th>
<th scope="col">Note</th><th scope="col">DICOM files</th></tr>
{''.join(rows)}</table></main></body></html>
"""
