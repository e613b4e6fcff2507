"""Export a cohort: tables (Parquet/CSV), the DICOM files and clinical JSON in the national bucket layout.

Output (a folder, or the same tree inside a ``.zip``)::

    clinical.parquet  clinical.csv  images.parquet  images.csv   one row per record / image
    training/{xray,ct,mri}/<Pseudonym>/<Study>/<Series>/<SOP>.dcm
    training/{xray,ct,mri}-metadata/<Pseudonym>/<Study>/<Series>/<SOP>.json
    training/data/<Pseudonym>/data_<date>.json, status_<date>.json   national format
    training/data-cleaned/<Pseudonym>/<kind>-<SITE>.json           our cleaned records
    cohort.json    the filter, the sets and the counts
    manifest.csv   key, size, sha256 of every file above

Objects are streamed in chunks (constant memory) and each image's SHA-256 is checked against
the catalogue while it is copied; a mismatch stops the export and nothing partial is left.
Header JSON is read whole (it holds no bulk data) and written as strict JSON: one an older
release stored with ``NaN`` or ``Infinity`` loses those numbers (``dicom_json.strict_header``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nccid.warehouse.dicom_json import strict_header
from nccid.warehouse.national import file_names

from .cohort import Cohort, CohortFilter, Counts, QueryLimitError, scope_for
from .source import Source
from .staging import Staging

FORMATS = ("parquet", "csv", "dicom")
CHUNK = 1024 * 1024


class ExportError(Exception):
    """The export could not be completed; nothing partial is left at the destination."""


@dataclass
class ExportResult:
    destination: Path
    counts: Counts
    files: int
    bytes: int
    formats: tuple[str, ...]


def parse_formats(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"format {unknown[0] if unknown else '(none)'!r}: choose from "
                          f"{', '.join(FORMATS)}")
    return formats


class _Writer:
    """Files written under a staging folder, moved into place only when all is well. The
    folder is locked while in use: one left by a killed export is swept (``staging``)."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self.manifest: list[tuple[str, int, str]] = []
        self._staging = Staging(destination.parent)
        self.staging = self._staging.path

    def stream(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def copy(self, key: str, src: BinaryIO, sha256: str | None = None,
             size: int | None = None) -> None:
        """Copy a stream to ``key``, hashing as it goes; check against the catalogue if given."""
        digest, count = hashlib.sha256(), 0
        with self.stream(key) as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                count += len(chunk)
        if (sha256 is not None and digest.hexdigest() != sha256) or (size is not None and count != size):
            raise ExportError(f"{key}: the warehouse object does not match its catalogue checksum")
        self.manifest.append((key, count, digest.hexdigest()))

    def add_file(self, key: str, path: Path) -> None:
        with path.open("rb") as src:
            self.copy(key, src)

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        self._staging.release()

    def complete(self) -> tuple[int, int]:
        """Write the manifest and move the export into place; (files, bytes) it holds."""
        files, total = len(self.manifest), sum(size for _, size, _ in self.manifest)
        self.write_manifest()
        self.finish()
        return files, total

    def write_manifest(self) -> None:
        path = self.staging / ".manifest.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["key", "size", "sha256"])
            writer.writerows(self.manifest)
        with path.open("rb") as src, self.stream("manifest.csv") as out:
            shutil.copyfileobj(src, out, CHUNK)


class _DirWriter(_Writer):
    def stream(self, name: str) -> BinaryIO:
        path = self.staging / "tree" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("wb")

    def finish(self) -> None:
        if self.destination.exists():
            self.destination.rmdir()  # an empty folder the caller made; refuses a non-empty one
        os.replace(self.staging / "tree", self.destination)
        self.abort()


class _ZipWriter(_Writer):
    def __init__(self, destination: Path) -> None:
        super().__init__(destination)
        self.zip = zipfile.ZipFile(self.staging / "export.zip", "w", allowZip64=True)

    def stream(self, name: str) -> BinaryIO:
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        # DICOM pixel data barely compresses: store it, deflate the text.
        info.compress_type = zipfile.ZIP_STORED if name.endswith(".dcm") else zipfile.ZIP_DEFLATED
        return self.zip.open(info, "w", force_zip64=True)

    def finish(self) -> None:
        self.zip.close()
        os.replace(self.staging / "export.zip", self.destination)
        self.abort()

    def abort(self) -> None:
        self.zip.close()
        super().abort()


def _writer_for(destination: Path) -> _Writer:
    destination = destination.resolve()
    if destination.suffix.lower() == ".zip":
        if destination.exists():
            raise ExportError(f"{destination} already exists; choose a new file name")
        destination.parent.mkdir(parents=True, exist_ok=True)
        return _ZipWriter(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ExportError(f"{destination} already exists and is not an empty folder")
    destination.parent.mkdir(parents=True, exist_ok=True)
    return _DirWriter(destination)


# A cell a spreadsheet would run as a formula (or DDE) when the CSV is opened.
FORMULA_START = r"^([=+\-@\t\r])"


def _csv_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Nested columns (lists, structs) as JSON text, which CSV can hold; text a spreadsheet
    would run as a formula (a site's manufacturer field, say) starts with an apostrophe."""
    columns, names = [], []
    for column, spec in zip(batch.columns, batch.schema, strict=True):
        if pa.types.is_nested(spec.type):
            column = pa.array([json.dumps(v, default=str) if v is not None else None
                               for v in column.to_pylist()], pa.string())
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.replace_substring_regex(column, pattern=FORMULA_START, replacement="'\\1")
        columns.append(column)
        names.append(spec.name)
    return pa.RecordBatch.from_arrays(columns, names=names)


def _write_tables(cohort: Cohort, writer: _Writer, formats: tuple[str, ...]) -> None:
    """Each table streamed batch by batch from DuckDB into Parquet and CSV files."""
    queries = {
        "clinical": "SELECT c.* FROM clinical c WHERE list_contains($sets, c.set_name) "
                    "AND c.pseudonym IN (SELECT pseudonym FROM cp) ORDER BY c.pseudonym, c.kind, c.site",
        "images": "SELECT * FROM img "
                  "ORDER BY pseudonym, study_uid, series_uid, sop_uid",
    }
    for name, sql in queries.items():
        paths = {f: writer.staging / f"{name}.{f}" for f in ("parquet", "csv") if f in formats}
        with cohort.arrow_batches(sql, 50_000) as reader:  # the research limits apply
            _write_table(reader, paths)
        for fmt, path in paths.items():
            writer.add_file(f"{name}.{fmt}", path)
            path.unlink()


def _write_table(reader: pa.RecordBatchReader, paths: dict[str, Path]) -> None:
    pq_writer = pq.ParquetWriter(paths["parquet"], reader.schema) if "parquet" in paths else None
    csv_writer = None
    for batch in reader:
        if pq_writer:
            pq_writer.write_batch(batch)
        if "csv" in paths:
            flat = _csv_ready(batch)
            csv_writer = csv_writer or pacsv.CSVWriter(paths["csv"], flat.schema)
            csv_writer.write_batch(flat)
    if pq_writer:
        pq_writer.close()
    if "csv" in paths:
        if csv_writer is None:  # no rows: still write the header
            empty = _csv_ready(pa.RecordBatch.from_pylist([], schema=reader.schema))
            csv_writer = pacsv.CSVWriter(paths["csv"], empty.schema)
        csv_writer.close()


def metadata_key(storage_key: str, folder: str) -> str:
    """``training/xray/P/St/Se/SOP.dcm`` -> ``training/xray-metadata/P/St/Se/SOP.json``."""
    set_name, _, rest = storage_key.partition("/")
    _, _, tail = rest.partition("/")
    return f"{set_name}/{folder}-metadata/{tail.removesuffix('.dcm')}.json"


class _WarehouseObject:
    """A warehouse object opened for copying. The catalogue can name an object the store no
    longer holds (a withdrawal deletes objects before rows): opening or reading it fails as an
    ExportError naming the key, so the failure is audited and shown as one line. The key holds
    only a pseudonym and keyed UIDs; the store's own path and message are not repeated."""

    def __init__(self, source: Source, key: str) -> None:
        self.key = key
        self.stream = self._guard(source.open_object, key)

    def _guard(self, action, *args):
        try:
            return action(*args)
        except FileNotFoundError as exc:
            raise ExportError(f"{self.key}: missing from the warehouse") from exc
        except OSError as exc:
            raise ExportError(f"{self.key}: could not be read from the warehouse "
                              f"({exc.__class__.__name__})") from exc

    def read(self, size: int = -1) -> bytes:
        return self._guard(self.stream.read, size)

    def __enter__(self) -> _WarehouseObject:
        return self

    def __exit__(self, *_: object) -> None:
        self.stream.close()


Progress = Callable[[int, int], None]  # (images copied, images in the cohort)


def copy_image(source: Source, writer: _Writer, key: str, size: int, sha256: str,
               folder: str) -> None:
    """One image, checked against its catalogue checksum, and its header JSON beside it."""
    with _WarehouseObject(source, key) as src:
        writer.copy(key, src, sha256, size)
    meta = metadata_key(key, folder)
    if source.exists(meta):
        with _WarehouseObject(source, meta) as src:
            header, _ = strict_header(src.read())  # (one an older release stored)
        writer.copy(meta, io.BytesIO(header))


def _write_objects(cohort: Cohort, writer: _Writer, progress: Progress | None = None) -> None:
    source = cohort.source
    total, done = cohort.counts().images, 0
    cursor = cohort.image_rows("storage_key, size, sha256, folder")
    while batch := cursor.fetchmany(1000):
        for key, size, sha, folder in batch:
            copy_image(source, writer, key, size, sha, folder)
            done += 1
            if progress is not None:
                progress(done, total)
    _write_clinical_json(cohort, writer)


# A research host has no key file, so it can neither refresh the catalogue nor run init.
STALE_CATALOGUE = ("the catalogue predates the national clinical files: on the main host (the "
                   "one with the key file) 'nccid init' after the upgrade, or 'nccid warehouse "
                   "catalogue', refreshes it; on a research host ask the data manager to, or "
                   "wait for the next scheduled refresh, then export again")
CLEANED_FOLDER = "data-cleaned"  # our cleaned JSON: outside data/, which national readers parse


def _write_clinical_json(cohort: Cohort, writer: _Writer) -> None:
    """Each record's files, from the catalogue (not copied from the warehouse: a JSON written
    there by an older release, or before a refresh, may hold other dates than the tables
    beside it, and the difference is the patient's date shift, docs/deidentification.md):

    - in the national bucket's format, ``{set}/data/<P>/data_<date>.json`` (positive) and
      ``status_<date>.json`` (negative, one per swab), for programs written for that bucket
      (``nccid.warehouse.national``; docs/warehouse.md, "Differences from the national bucket");
    - our cleaned JSON as ``{set}/data-cleaned/<P>/<kind>-<SITE>.json``, written as the
      warehouse writes it (``clinical_json``)."""
    clinical = cohort._execute(
        "SELECT set_name, pseudonym, kind, site, any_value(cleaned), any_value(national), "
        "any_value(updated_at) FROM clinical c "
        "WHERE list_contains($sets, c.set_name) AND c.pseudonym IN (SELECT pseudonym FROM cp) "
        "GROUP BY ALL ORDER BY ALL", fetch=_all_rows)  # fetched within the limits too
    national: dict[tuple[str, str], list[tuple[str, str, dict]]] = {}
    for set_name, pseudonym, kind, site, cleaned, entries, updated_at in clinical:
        record = json.loads(cleaned) if cleaned else {}
        data = json.dumps(record, sort_keys=True, indent=1, default=str).encode()
        writer.copy(f"{set_name}/{CLEANED_FOLDER}/{pseudonym}/{kind}-{site}.json", io.BytesIO(data))
        for entry in json.loads(entries or "[]"):
            day = _file_date(entry, updated_at)
            if day:
                national.setdefault((set_name, pseudonym), []).append((entry["prefix"], day, entry["record"]))
    for (set_name, pseudonym), files in national.items():
        names = file_names([(prefix, day) for prefix, day, _ in files])
        for name, (_, _, record) in zip(names, files, strict=True):
            writer.copy(f"{set_name}/data/{pseudonym}/{name}", io.BytesIO(json.dumps(record, indent=1).encode()))


def _refuse_a_stale_catalogue(cohort: Cohort) -> None:
    columns = {row[0] for row in cohort.con.execute("DESCRIBE SELECT * FROM clinical").fetchall()}
    if "national" not in columns:
        raise ExportError(STALE_CATALOGUE)


def _file_date(entry: dict, updated_at: Any) -> str | None:
    """A national file's date: a positive record's submission (its last change, as the national
    loader named files by the day they arrived) where researchers may see arrival times; under
    shift-dates, which withholds them, its latest clinical date (shifted). A status file's is
    its swab's date (shifted under shift-dates): the sheet's swabs arrive together, so one
    upload's day would not tell them apart. None (no file): a record with no date at all
    under shift-dates."""
    if entry["prefix"] == "data" and updated_at is not None:
        return updated_at.date().isoformat()
    return entry.get("date")


def _all_rows(result: Any) -> list[tuple]:
    return result.fetchall()


def write_export(cohort: Cohort, destination: Path, formats: tuple[str, ...],
                 progress: Progress | None = None) -> ExportResult:
    """Write ``cohort`` to ``destination`` (folder or ``.zip``), all or nothing; ``progress``
    hears of each image as it is copied."""
    if "dicom" in formats:
        _refuse_a_stale_catalogue(cohort)  # before any copying: not after hours of images
    writer = _writer_for(Path(destination))
    try:
        _write_tables(cohort, writer, formats)
        if "dicom" in formats:
            _write_objects(cohort, writer, progress)
        info = {"filter": cohort.filter.to_dict(), "sets": list(cohort.sets),
                "counts": cohort.counts().as_dict(), "formats": list(formats)}
        path = writer.staging / ".cohort.json"
        path.write_text(json.dumps(info, indent=2))
        writer.add_file("cohort.json", path)
        files, total = writer.complete()
    except BaseException:
        writer.abort()
        raise
    return ExportResult(Path(destination), cohort.counts(), files, total, formats)


def export_cohort(user: Any, flt: CohortFilter, destination: str | Path,
                  formats: str | tuple[str, ...] = FORMATS, source: Source | None = None,
                  progress: Progress | None = None) -> ExportResult:
    """Export the cohort ``user`` may see; the export is audited (filter, counts, size)."""
    from nccid.accounts.models import audit

    formats = parse_formats(formats)
    cohort = Cohort(flt, scope_for(user), source)
    try:
        result = write_export(cohort, Path(destination), formats, progress)
    except Exception as exc:
        # Any failure is audited; only an ExportError's message (keys, never a store path) or a
        # QueryLimitError's (the limit and its setting) is kept.
        error = str(exc) if isinstance(exc, ExportError | QueryLimitError) else exc.__class__.__name__
        audit(user, "research.export.failed", filter=flt.to_dict(), error=error)
        raise
    finally:
        cohort.close()
    audit(user, "research.export", filter=flt.to_dict(), sets=list(cohort.sets),
          formats=list(formats), files=result.files, bytes=result.bytes,
          **result.counts.as_dict())
    return result


def read_manifest(path: Path | str) -> dict[str, tuple[int, str]]:
    """The manifest of an export folder or zip: key -> (size, sha256)."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as zf:
            text = zf.read("manifest.csv").decode()
    else:
        text = (path / "manifest.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return {r["key"]: (int(r["size"]), r["sha256"]) for r in rows}
