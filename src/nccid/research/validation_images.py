"""Hand the validation set's images to an AI product, under the data manager's control.

Researchers never see the validation set. The real NCCID held it back and ran vendors'
products on it where its data managers controlled them; this is the step that gives them the
images to run a product on, and the IDs its predictions file must name for ``nccid validate``.

Output (a folder, or the same tree inside a ``.zip``; the research export's writer)::

    validation/{xray,ct,mri,other}/<Pseudonym>/<Study>/<Series>/<SOP>.dcm   as stored
    validation/{xray,ct,mri,other}-metadata/<Pseudonym>/<Study>/<Series>/<SOP>.json
    images.csv       pseudonym, study/series/SOP Instance UIDs, modality, the file's key
    PREDICTIONS.txt  how to write the predictions file ``nccid validate`` scores
    validation.json  the modalities chosen and the counts
    manifest.csv     key, size, sha256 of every file above

No clinical record, label or status leaves: not the patients table, not the clinical JSON;
every validation patient's images go (those without a known status too), so which patients
count towards a report cannot be read off the export either.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cohort import CohortFilter, Counts, _modality_sql
from .export import FORMULA_START, ExportError, Progress, _Writer, _writer_for, copy_image
from .services import VALIDATION_SET, require_data_manager
from .source import Source, default_source

ACTION = "research.validate.images"
# images.csv: the ID columns a predictions file names, and where each image is in the export.
IMAGE_COLUMNS = ("pseudonym", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
                 "modality", "key")
_SELECT = ("SELECT pseudonym, study_uid, series_uid, sop_uid, modality, storage_key, size, sha256, "
           "folder FROM images i WHERE {where} ORDER BY pseudonym, study_uid, series_uid, sop_uid")
HOW_TO_PREDICT = """\
Predictions for 'nccid validate': a CSV file with a header and one row per prediction.

Patient level: one row per pseudonym of images.csv
    pseudonym,score
    NCCID-…,0.83

Image level: one row per sop_instance_uid of images.csv
    sop_instance_uid,score
    2.25.…,0.83

A score is a number; higher means more likely COVID-positive. Every ID must come from
images.csv: an ID of any other image or patient is refused, naming its line.
"""


@dataclass
class ValidationImages:
    destination: Path
    counts: Counts
    files: int
    bytes: int


def export_validation_images(user: Any, destination: str | Path, modality: Iterable[str] = (),
                             source: Source | None = None, progress: Progress | None = None
                             ) -> ValidationImages:
    """Write the validation set's images (of ``modality``: codes or folders, all if empty) to
    ``destination``, a new folder or ``.zip``, all or nothing. Data managers and administrators
    only; audited (``research.validate.images``: the modalities and counts)."""
    from nccid.accounts.models import audit

    require_data_manager(user)
    modalities = CohortFilter.from_dict({"modality": list(modality)}).modality
    source = source or default_source()
    con = source.connect()
    try:
        result = _export(con, source, Path(destination), modalities, progress)
    except Exception as exc:
        # Only an ExportError's message is kept (keys, never a store path).
        error = str(exc) if isinstance(exc, ExportError) else exc.__class__.__name__
        audit(user, f"{ACTION}.failed", sets=[VALIDATION_SET], modality=list(modalities),
              error=error)
        raise
    finally:
        con.close()
    audit(user, ACTION, sets=[VALIDATION_SET], modality=list(modalities), files=result.files,
          bytes=result.bytes, **result.counts.as_dict())
    return result


def _export(con, source: Source, destination: Path, modalities: tuple[str, ...],
            progress: Progress | None) -> ValidationImages:
    params: dict[str, Any] = {"set": VALIDATION_SET}
    where = "i.set_name = $set" + (f" AND {_modality_sql(modalities, params)}" if modalities else "")
    counts = Counts(*con.execute(
        f"SELECT count(DISTINCT pseudonym), count(DISTINCT study_uid), count(*) FROM images i "
        f"WHERE {where}", params).fetchone())
    if not counts.images:
        raise ExportError("the validation set holds no images" + (
            f" of modality {', '.join(modalities)}" if modalities else ""))
    writer = _writer_for(destination)
    try:
        _write_images(con.execute(_SELECT.format(where=where), params), source, writer,
                      counts.images, progress)
        info = {"set": VALIDATION_SET, "modality": list(modalities), "counts": counts.as_dict()}
        writer.copy("PREDICTIONS.txt", _bytes(HOW_TO_PREDICT))
        writer.copy("validation.json", _bytes(json.dumps(info, indent=2)))
        files, total = writer.complete()
    except BaseException:
        writer.abort()
        raise
    return ValidationImages(destination, counts, files, total)


def _write_images(cursor, source: Source, writer: _Writer, total: int,
                  progress: Progress | None) -> None:
    """Each image and its header JSON, checked against the catalogue, and its row in images.csv."""
    listing = writer.staging / ".images.csv"
    done = 0
    with listing.open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(IMAGE_COLUMNS)
        while batch := cursor.fetchmany(1000):
            for pseudonym, study, series, sop, modality, key, size, sha, folder in batch:
                copy_image(source, writer, key, size, sha, folder)
                rows.writerow((pseudonym, study, series, sop, _cell(modality or ""), key))
                done += 1
                if progress is not None:
                    progress(done, total)
    writer.add_file("images.csv", listing)
    listing.unlink()


def _cell(text: str) -> str:
    """A site's Modality as a spreadsheet shows it, never runs it (as the research export)."""
    return re.sub(FORMULA_START, r"'\1", text)


def _bytes(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())
