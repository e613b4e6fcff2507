"""The Parquet catalogue under the warehouse's ``catalogue/`` and DuckDB views over it.

``refresh_catalogue()`` is incremental: image rows not yet catalogued are claimed in the
database under a new part number and written as one new Parquet part; the small tables
(``clinical``, ``patients``, ``studies``) are rebuilt; ``state.json`` is written last and names
every file of the new version, so readers never see a half-written refresh. Parts are merged
when they grow many. Each row belongs to exactly one part (``ImageRecord.catalogue_part``), so
a crash or a late-committing transaction can neither lose nor duplicate a row: the next refresh
writes the parts a dead one claimed. Rows are claimed only once ``state.json`` exists (the first
refresh writes an empty one first), so claimed rows without it mean a store that lost its
catalogue, never a first refresh that died. Refreshes run one at a time across processes
(``refresh_lock``).

``connect_catalogue()`` opens the views ``images``, ``studies``, ``clinical``, ``patients``
(docs/architecture.md). On S3 the catalogue's files are mirrored into a local cache first
(DuckDB then reads local Parquet: fast, and no DuckDB extension download is needed).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from django.db import connections, router

from nccid.config import get_settings, mask_url_password

from . import catalogue_schema as cs
from .dateshift import DateShift, deployment_shift
from .layout import CATALOGUE_PREFIX
from .models import ImageRecord, PatientSet
from .national import national_files
from .service import get_warehouse
from .storage import STALE_TEMPORARY, TEMP_PREFIX, StorageError, Warehouse

log = logging.getLogger("nccid.warehouse")
COMPACT_AT = 32  # merge image parts once there are more than this many
_ROW_CHUNK = 20_000
STATE_KEY = f"{CATALOGUE_PREFIX}/{cs.STATE_FILE}"
# Marks a state whose every file was written with arrival times withheld (``shift-dates``).
ARRIVALS_WITHHELD = "arrival_times_withheld"

# ImageRecord field for each images column (site is the site's code).
_IMAGE_FIELDS = {name: ("site__code" if name == "site" else name) for name in cs.IMAGES_SCHEMA.names}


def _key(relative: str) -> str:
    return f"{CATALOGUE_PREFIX}/{relative}"


def _read_state(warehouse: Warehouse) -> dict:
    """The catalogue's current state; the empty state only for a warehouse never catalogued.

    A missing ``state.json`` while the database has catalogued images means the store is not
    the one written (an unmounted folder, a wrong bucket): reading it as empty would give empty
    cohorts and exports, and a refresh would restart the catalogue at version 1."""
    if warehouse.exists(STATE_KEY):
        return json.loads(warehouse.read(STATE_KEY))
    catalogued = ImageRecord.objects.exclude(catalogue_part=None).count()
    if catalogued:
        raise StorageError(
            f"the warehouse at {mask_url_password(warehouse.url)} has no catalogue although "
            f"{catalogued:,} images are catalogued: is the store mounted/reachable?")
    return cs.empty_state()


# -- refresh ------------------------------------------------------------------------------------
def refresh_catalogue(*, compact_at: int = COMPACT_AT) -> dict:
    """Bring the catalogue up to date with the database; returns row counts and what changed.

    One refresh at a time, across processes (a withdrawal's refreshes, the cron job, the CLI):
    two at once would compute the same version and file names, delete each other's files and
    could publish a state read before a purge."""
    with refresh_lock():
        return _refresh(compact_at)


def _refresh(compact_at: int) -> dict:
    from nccid.clinical.services import expire_checks
    from nccid.withdrawal.services import sweep

    from .service import write_owed_clinical_json

    expire_checks()  # the hourly upkeep: abandoned checks keep no patient's rows for good
    sweep()  # a withdrawn patient's data that raced the withdrawal never reaches researchers
    warehouse = get_warehouse()
    warehouse.ensure()
    old = _read_state(warehouse)  # (refuses a store that lost its catalogue: nothing is written there)
    if not old.get("version"):
        _write_initial_state(warehouse, old)
    write_owed_clinical_json()  # records whose upload died before writing their JSON
    shift = deployment_shift()
    if shift.shifts and not old.get(ARRIVALS_WITHHELD):
        compact_at = 0  # parts written with real arrival times are rewritten as one new part
    new_rows, parts = _claim_rows(old, compact_at)

    image_files = dict(old.get("image_parts", {}))
    entries = []
    for part in parts:
        entry = image_files.get(str(part))
        if entry is None or not warehouse.exists(_key(entry["key"])):
            entry = _write_image_part(warehouse, part, shift)
        entries.append((part, entry))

    version = int(old.get("version", 0)) + 1
    state = {
        "format": cs.STATE_FORMAT, "version": version,
        # to the microsecond: clinical records are "changed since" by comparison with it
        "updated_at": datetime.now(UTC).isoformat(),
        "image_parts": {str(p): e for p, e in entries},
        "files": {"images": [e for _, e in entries]},
    }
    if shift.shifts:
        state[ARRIVALS_WITHHELD] = True
    tables = _derived_tables(warehouse, state, shift)
    for view, table in tables.items():
        relative = f"{view}-v{version:06d}.parquet"
        digest = warehouse.write_atomic(_key(relative), cs.parquet_bytes(table))
        state["files"][view] = [{"key": relative, "rows": table.num_rows, "sha256": digest}]
    state["counts"] = {view: sum(e["rows"] for e in state["files"][view]) for view in cs.VIEWS}
    warehouse.write_atomic(STATE_KEY, json.dumps(state, indent=1).encode())
    _delete_unreferenced(warehouse, old, state)
    _synced.pop(warehouse.url, None)  # this process sees the new version at once
    return {**state["counts"], "new_images": new_rows, "parts": len(entries), "version": version}


def _write_initial_state(warehouse: Warehouse, empty: dict) -> None:
    """The empty state of a warehouse never catalogued, written before its first claim: a
    first refresh that dies after claiming (killed, disk full, the store refusing a write)
    leaves claims the next refresh writes, not claims without a state, which read as a store
    that lost its catalogue (``_read_state``) and would stop every refresh for good."""
    warehouse.write_atomic(STATE_KEY, json.dumps(empty, indent=1).encode())


WAITING = "catalogue refresh: waiting for another refresh to finish"
_ADVISORY_LOCK = 0x4E434944  # PostgreSQL advisory lock key of catalogue refreshes ("NCID")


@contextmanager
def refresh_lock() -> Iterator[None]:
    """Held by one catalogue refresh at a time, across every process of the installation.

    PostgreSQL: a session advisory lock (no transaction is held open, so intake and withdrawals
    go on meanwhile). SQLite: every process using the database runs on its host, so a file lock
    beside it serialises them just as well, without taking SQLite's single write lock for the
    length of a refresh (that would make intake give up with "database is locked")."""
    connection = connections[router.db_for_write(ImageRecord)]
    if connection.vendor == "postgresql":
        with _advisory_lock(connection):
            yield
    else:
        with _file_lock(_lock_file(connection)):
            yield


@contextmanager
def _advisory_lock(connection) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_ADVISORY_LOCK])
        if not cursor.fetchone()[0]:
            log.info(WAITING)
            cursor.execute("SELECT pg_advisory_lock(%s)", [_ADVISORY_LOCK])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_ADVISORY_LOCK])


def _lock_file(connection) -> Path:
    """Beside the SQLite database (NCCID_HOME for an in-memory one, as in tests)."""
    if connection.is_in_memory_db():
        return get_settings().home / "catalogue-refresh.lock"
    return Path(f"{connection.settings_dict['NAME']}.catalogue-refresh.lock")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:  # flock: each open is its own lock, even in one process
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(WAITING)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _claim_rows(old_state: dict, compact_at: int) -> tuple[int, list[int]]:
    """Give uncatalogued rows a new part number (merging parts if many); the parts in use."""
    known = [int(p) for p in old_state.get("image_parts", {})]
    in_db = ImageRecord.objects.exclude(catalogue_part=None).order_by("-catalogue_part")
    highest = in_db.values_list("catalogue_part", flat=True).first() or 0
    next_part = max([highest, *known]) + 1
    new_rows = ImageRecord.objects.filter(catalogue_part=None).update(catalogue_part=next_part)
    parts = _parts_in_db()
    if len(parts) > compact_at:
        merged = max(parts) + 1
        ImageRecord.objects.filter(catalogue_part__in=parts).update(catalogue_part=merged)
        parts = [merged]
    return new_rows, parts


def _parts_in_db() -> list[int]:
    values = (ImageRecord.objects.exclude(catalogue_part=None).order_by("catalogue_part")
              .values_list("catalogue_part", flat=True).distinct())
    return list(values)


def _write_image_part(warehouse: Warehouse, part: int, shift: DateShift) -> dict:
    rows = (ImageRecord.objects.filter(catalogue_part=part).order_by("id")
            .values_list(*_IMAGE_FIELDS.values()))
    columns: dict[str, list] = {name: [] for name in _IMAGE_FIELDS}
    names = list(_IMAGE_FIELDS)
    for row in rows.iterator(chunk_size=_ROW_CHUNK):
        for name, value in zip(names, row, strict=True):
            columns[name].append(value)
    columns["received_at"] = [shift.arrival(_naive_utc(v)) for v in columns["received_at"]]
    table = pa.table(columns, schema=cs.IMAGES_SCHEMA)
    relative = f"images/part-{part:06d}.parquet"
    digest = warehouse.write_atomic(_key(relative), cs.parquet_bytes(table))
    return {"key": relative, "rows": table.num_rows, "sha256": digest}


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _clinical_model():
    from django.apps import apps

    try:
        return apps.get_model("clinical", "ClinicalRecord")
    except LookupError:  # the clinical part's model is not installed yet
        return None


def clinical_base_table(shift: DateShift | None = None) -> pa.Table:
    """Every clinical record as CLINICAL_BASE_SCHEMA rows, with the patient's set; dates and
    arrival times as ``shift`` (default: the deployment's) writes them for researchers."""
    shift = shift or deployment_shift()
    model = _clinical_model()
    if model is None:
        return cs.CLINICAL_BASE_SCHEMA.empty_table()
    field_names = {f.name for f in model._meta.get_fields()}
    updated = next((n for n in ("updated", "updated_at", "modified") if n in field_names), None)
    wanted = ["pseudonym", "site__code", "kind", "cleaned", "data"] + ([updated] if updated else [])
    sets = dict(PatientSet.objects.values_list("pseudonym", "set_name"))
    columns: dict[str, list] = {name: [] for name in cs.CLINICAL_BASE_SCHEMA.names}
    for row in model.objects.order_by("pk").values_list(*wanted).iterator(chunk_size=_ROW_CHUNK):
        pseudonym, site, kind, cleaned, data = row[:5]
        record = shift.clinical(pseudonym, _as_dict(cleaned))
        columns["pseudonym"].append(pseudonym)
        columns["site"].append(site)
        columns["kind"].append(kind)
        columns["set_name"].append(sets.get(pseudonym))
        columns["updated_at"].append(shift.arrival(_naive_utc(row[5])) if updated else None)
        columns["cleaned"].append(json.dumps(record, sort_keys=True, default=str))
        columns["national"].append(json.dumps(
            national_files(kind, pseudonym, site, record, _as_dict(data)), default=str))
    return pa.table(columns, schema=cs.CLINICAL_BASE_SCHEMA)


def _as_dict(value) -> dict:
    return json.loads(value) if isinstance(value, str) else (value or {})


def _derived_tables(warehouse: Warehouse, state: dict, shift: DateShift) -> dict[str, pa.Table]:
    """clinical (flattened), studies and patients for the state's image parts."""
    directory = _local_copy(warehouse, state)
    con = cs.connect_files({"images": [directory / e["key"] for e in state["files"]["images"]]})
    clinical = cs.flatten_clinical(con, clinical_base_table(shift))
    con.execute("DROP VIEW clinical")
    con.register("clinical", clinical)
    patient_sets = pa.table(
        {"pseudonym": list(PatientSet.objects.order_by("pseudonym").values_list("pseudonym", flat=True)),
         "set_name": list(PatientSet.objects.order_by("pseudonym").values_list("set_name", flat=True))},
        schema=cs.PATIENT_SETS_SCHEMA)
    con.register("patient_sets", patient_sets)
    derived = cs.derive_tables(con)
    con.close()
    return {"clinical": clinical, **derived}


def _delete_unreferenced(warehouse: Warehouse, old: dict, new: dict) -> None:
    """Drop files neither the new nor the previous version names (a reader may still hold it)."""
    keep = {e["key"] for state in (old, new) for view in cs.VIEWS
            for e in state.get("files", {}).get(view, [])}
    for key in warehouse.list(CATALOGUE_PREFIX):
        relative = key[len(CATALOGUE_PREFIX) + 1:]
        if relative.endswith(".parquet") and relative not in keep:
            warehouse.delete(key)


# -- reading ------------------------------------------------------------------------------------
def _cache_root(warehouse: Warehouse) -> Path:
    tag = hashlib.sha256(warehouse.url.encode()).hexdigest()[:12]
    return get_settings().home / "cache" / "catalogue" / tag


def _local_copy(warehouse: Warehouse, state: dict) -> Path:
    """A local directory holding ``state``'s files under their keys (mirrored from S3)."""
    if warehouse.is_local:
        return Path(warehouse.path(CATALOGUE_PREFIX))
    root = _cache_root(warehouse)
    for view in cs.VIEWS:
        for entry in state.get("files", {}).get(view, []):
            target = root / entry["key"]
            if not target.exists() or _cached_sha(target) != entry["sha256"]:
                warehouse.download(_key(entry["key"]), target, entry["sha256"])
                _cached_sha(target, refresh=True)
    return root


_sha_memo: dict[tuple[str, float, int], str] = {}


def _cached_sha(path: Path, refresh: bool = False) -> str:
    stat = path.stat()
    memo_key = (str(path), stat.st_mtime, stat.st_size)
    if refresh or memo_key not in _sha_memo:
        from .storage import sha256_file

        _sha_memo[memo_key] = sha256_file(path)
    return _sha_memo[memo_key]


_synced: dict[str, tuple[float, Path]] = {}
SYNC_INTERVAL = 2.0  # seconds between checks of a remote catalogue's state


def catalogue_dir() -> Path:
    """A local directory with the current catalogue (``state.json`` + Parquet files)."""
    warehouse = get_warehouse()
    if warehouse.is_local:
        _read_state(warehouse)  # refuses a folder that lost its catalogue (not mounted)
        return Path(warehouse.path(CATALOGUE_PREFIX))
    checked = _synced.get(warehouse.url)
    if checked and time.monotonic() - checked[0] < SYNC_INTERVAL:
        return checked[1]
    state = _read_state(warehouse)
    root = _local_copy(warehouse, state)
    if cs.read_state(root).get("version") != state.get("version") or warehouse.url not in _synced:
        _prune_cache(root, state, warehouse)  # once per version, and per process
    temp = root / f".state-{os.getpid()}.json"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_text(json.dumps(state))
    os.replace(temp, root / cs.STATE_FILE)
    _synced[warehouse.url] = (time.monotonic(), root)
    return root


def prune_catalogue_cache() -> None:
    """Drop this host's cached catalogue files that neither the current nor the previous
    version names, however recent (a withdrawal: the patient's rows must leave every disk).
    Other hosts prune theirs when they next read the catalogue (docs/withdrawal.md)."""
    warehouse = get_warehouse()
    if not warehouse.is_local:
        _prune_cache(_cache_root(warehouse), _read_state(warehouse), warehouse)


def _held_files(warehouse: Warehouse) -> set[str]:
    """The catalogue's Parquet files in the warehouse, relative to ``catalogue/``: a refresh
    keeps exactly those of its version and of the one before (readers mid-query use them)."""
    prefix = len(CATALOGUE_PREFIX) + 1
    return {key[prefix:] for key in warehouse.list(CATALOGUE_PREFIX) if key.endswith(".parquet")}


def _prune_cache(root: Path, state: dict, warehouse: Warehouse | None = None) -> None:
    """Drop cached files that neither ``state`` nor ``warehouse`` holds, whatever their age,
    and temporaries of downloads killed mid-way. A file downloaded after the listing began is
    another process's newer version, and stays."""
    started = time.time()
    keep = {root / relative for relative in (_held_files(warehouse) if warehouse else ())}
    keep |= {root / e["key"] for view in cs.VIEWS for e in state.get("files", {}).get(view, [])}
    stale = started - STALE_TEMPORARY
    for path in [*root.rglob("*.parquet"), *root.rglob(f"{TEMP_PREFIX}*")]:
        try:
            too_old = stale if path.name.startswith(TEMP_PREFIX) else started
            if path not in keep and path.stat().st_mtime < too_old:
                path.unlink()
        except FileNotFoundError:  # another process pruned it first
            continue


def connect_catalogue(read_only: bool = True, *, directory: str | Path | None = None
                      ) -> duckdb.DuckDBPyConnection:
    """DuckDB connection with the views ``images``, ``studies``, ``clinical``, ``patients``.

    ``directory`` opens another catalogue directory (e.g. a synthetic one from
    ``nccid.synthetic.catalogue.make_catalogue``). The views only read Parquet files; nothing
    done through this connection changes the catalogue (``read_only`` is always honoured).
    """
    if not read_only:
        raise ValueError("the catalogue is written by refresh_catalogue(), never through a connection")
    return cs.connect_directory(directory if directory is not None else catalogue_dir())


def catalogue_counts() -> dict:
    """Row counts of the current catalogue version (from its state, no scan)."""
    state = _read_state(get_warehouse())
    return {"version": state.get("version", 0), **state.get("counts", {})}


def catalogue_updated_at() -> datetime | None:
    """When the current catalogue version was written (None before the first refresh): what
    researchers see is as of then."""
    stamp = _read_state(get_warehouse()).get("updated_at")
    return datetime.fromisoformat(stamp) if stamp else None
