"""Warehouse services: the object store, each patient's set, storing images and clinical JSON.

Called alike by imaging intake (node, importer, portal), the clinical signal, the CLI and
research. Nothing identifying passes through here: pseudonyms and de-identified UIDs only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Q, QuerySet

from nccid.config import get_settings

from . import layout
from .dateshift import deployment_shift
from .dicom_json import header_json
from .meta import ImageMeta
from .models import ImageRecord, KeptSet, PatientSet
from .split import choose_set
from .storage import Buffers, StorageError, Warehouse

log = logging.getLogger("nccid.warehouse")
_CHUNK = 500  # rows per IN (...) query: well under SQLite's variable limit
Progress = Callable[[int, int], None]  # (done, in all): what a CLI progress bar is told

__all__ = [
    "StoredImage", "Warehouse", "StorageError", "get_warehouse", "assign_set", "assign_sets",
    "retire_set",
    "ImageBatch", "COMMIT_TRIES", "lock_conflict", "store_image", "store_images",
    "write_clinical_records", "header_json",
    "refresh_catalogue", "connect_catalogue", "catalogue_dir",
]


# -- the object store -------------------------------------------------------------------------
_warehouses: dict[tuple, Warehouse] = {}


def get_warehouse() -> Warehouse:
    """The installation's warehouse (``storage_url`` + ``storage_options`` of the settings)."""
    settings = get_settings()
    cache_key = (settings.storage_url, json.dumps(settings.storage_options, sort_keys=True))
    warehouse = _warehouses.get(cache_key)
    if warehouse is None:
        warehouse = Warehouse(settings.storage_url, settings.storage_options)
        _warehouses.clear()
        _warehouses[cache_key] = warehouse
    return warehouse


# -- training/validation split ----------------------------------------------------------------
def _split_inputs(validation_percent: int | None) -> tuple[object, int]:
    from nccid.identity.service import get_keyring

    percent = get_settings().validation_percent if validation_percent is None else validation_percent
    return get_keyring(), percent


def assign_set(site, pseudonym: str, *, validation_percent: int | None = None) -> str:
    """The patient's set, decided by ``site``'s rule the first time and persisted for good
    (a withdrawn patient's set is kept: reinstated and sent again, they return to it)."""
    return assign_sets(site, [pseudonym], validation_percent=validation_percent)[pseudonym]


def assign_sets(site, pseudonyms: Iterable[str], *, validation_percent: int | None = None) -> dict[str, str]:
    """``assign_set`` for many patients at once (a few queries, whatever the count)."""
    wanted = sorted(set(pseudonyms))
    known = _known_sets(wanted)
    new = [p for p in wanted if p not in known]
    if new:
        # A concurrent writer may have decided some first: theirs stands (unique constraint),
        # and we read back whatever is now stored.
        PatientSet.objects.bulk_create(_new_sets(site, new, validation_percent),
                                       ignore_conflicts=True, batch_size=_CHUNK)
        known.update(_known_sets(new))
    missing = [p for p in wanted if p not in known]
    if missing:
        raise RuntimeError(f"could not record the set of {len(missing)} patient(s)")
    return known


def _new_sets(site, pseudonyms: Sequence[str], validation_percent: int | None) -> list[PatientSet]:
    """Set rows for patients without one: a reinstated patient's kept set, else ``site``'s rule."""
    kept = _kept_sets(pseudonyms)
    rows = [PatientSet(pseudonym=p, set_name=k.set_name, site_id=k.site_id or site.pk,
                       assigned_at=k.assigned_at or k.kept_at) for p, k in kept.items()]
    fresh = [p for p in pseudonyms if p not in kept]
    if fresh:
        keyring, percent = _split_inputs(validation_percent)
        rows += [PatientSet(pseudonym=p, site=site,
                            set_name=choose_set(site.split_rule, keyring.split_fraction(p), percent))
                 for p in fresh]
    return rows


def _kept_sets(pseudonyms: Sequence[str]) -> dict[str, KeptSet]:
    found: dict[str, KeptSet] = {}
    for start in range(0, len(pseudonyms), _CHUNK):
        chunk = pseudonyms[start:start + _CHUNK]
        found.update((k.pseudonym, k) for k in KeptSet.objects.filter(pseudonym__in=chunk))
    return found


def retire_set(pseudonym: str) -> int:
    """Remove the patient's set row (a withdrawal) but keep the set, so that if they are
    reinstated and sent again they return to it; how many set rows were removed."""
    with transaction.atomic():
        for row in PatientSet.objects.filter(pseudonym=pseudonym):
            KeptSet.objects.update_or_create(pseudonym=pseudonym, defaults={
                "set_name": row.set_name, "site_id": row.site_id, "assigned_at": row.assigned_at})
        return PatientSet.objects.filter(pseudonym=pseudonym).delete()[0]


def _known_sets(pseudonyms: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(pseudonyms), _CHUNK):
        chunk = pseudonyms[start:start + _CHUNK]
        found.update(PatientSet.objects.filter(pseudonym__in=chunk).values_list("pseudonym", "set_name"))
    return found


# -- images -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredImage:
    record: ImageRecord
    created: bool  # False: the SOP Instance UID was already stored, nothing was written


_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$")
# How many of each Age String unit make a year: an age is the whole years it has completed.
_PER_YEAR = {"D": 365, "W": 52, "M": 12, "Y": 1}


def age_in_years(age: str | int | None) -> int | None:
    """DICOM Age String as whole years completed (``045Y`` 45, ``120M`` 10, ``104W`` 2,
    ``400D`` 1, ``006M`` 0); None when absent or unreadable."""
    if age is None or age == "":
        return None
    if isinstance(age, int):
        return age
    match = _AGE.match(str(age).upper())
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2) or "Y"
    return number // _PER_YEAR[unit]


def _new_record(site, pseudonym: str, set_name: str, data: bytes, meta: ImageMeta) -> ImageRecord:
    import hashlib

    keys = (set_name, meta.modality, pseudonym, meta.study_uid, meta.series_uid, meta.sop_uid)
    return ImageRecord(
        sop_uid=meta.sop_uid, study_uid=meta.study_uid, series_uid=meta.series_uid,
        sop_class_uid=meta.sop_class_uid, pseudonym=pseudonym, site=site, set_name=set_name,
        modality=(meta.modality or "").strip().upper(), folder=layout.modality_folder(meta.modality),
        transfer_syntax=meta.transfer_syntax, study_date=_as_date(meta.study_date),
        series_date=_as_date(meta.series_date), body_part=meta.body_part[:64],
        manufacturer=meta.manufacturer[:64], model=meta.model[:64], rows=meta.rows,
        columns=meta.columns, pixel_spacing=meta.pixel_spacing[:64],
        view_position=meta.view_position[:16], patient_sex=meta.patient_sex[:16],
        patient_age=age_in_years(meta.patient_age),
        storage_key=layout.image_key(*keys), metadata_key=layout.metadata_key(*keys),
        size=len(data), sha256=hashlib.sha256(data).hexdigest(),
    )


def _as_date(value) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return datetime.strptime(str(value), "%Y%m%d").date()
    except ValueError:
        return None


def _write_objects(warehouse: Warehouse, record: ImageRecord, data: bytes, header: bytes) -> None:
    digest = warehouse.write_atomic(record.storage_key, data)
    if digest != record.sha256:
        raise StorageError(f"{record.storage_key}: checksum changed while writing")
    warehouse.write_atomic(record.metadata_key, header)


def store_image(site, pseudonym: str, data: bytes, meta: ImageMeta, *, linked: bool = True,
                dataset=None, hospital_hash: str | None = None) -> StoredImage:
    """Store one de-identified image; idempotent by its (de-identified) SOP Instance UID.

    The row is inserted and the objects written inside one transaction, so the commit is the
    single point where an image becomes stored: a crash before it leaves no row (a retry
    rewrites the same keys), and a second store of the same SOP UID waits on the unique
    constraint and then writes nothing. ``dataset`` (the parsed de-identified dataset, if the
    caller has it) saves parsing the header again. ``hospital_hash``: the hospital number
    that linked it ("" for an NHS/CHI number, None if the caller cannot say).
    """
    existing = ImageRecord.objects.filter(sop_uid=meta.sop_uid).first()
    if existing is not None:
        return StoredImage(existing, False)
    set_name = assign_set(site, pseudonym)
    record = _new_record(site, pseudonym, set_name, data, meta)
    record.linked, record.hospital_hash = linked, hospital_hash
    header = header_json(data, dataset)
    warehouse = get_warehouse()
    ours: list[str] = []  # keys this call writes that held no object before it
    try:
        with transaction.atomic():
            record.save(force_insert=True)
            keys = (record.storage_key, record.metadata_key)
            ours = [key for key in keys if not warehouse.exists(key)]
            try:
                _write_objects(warehouse, record, data, header)
            except BaseException:
                # Removed while the row's lock still holds off another writer of this image.
                _remove_unrecorded(warehouse, ours)
                ours = []
                raise
    except IntegrityError:
        return StoredImage(ImageRecord.objects.get(sop_uid=meta.sop_uid), False)
    except BaseException:
        _remove_unrecorded(warehouse, ours)  # the commit itself failed
        raise
    return StoredImage(record, True)


def _remove_unrecorded(warehouse: Warehouse, keys: list[str]) -> None:
    """Remove objects written for rows that were never committed (no row would name them,
    and a withdrawal would miss them)."""
    if not keys:
        return
    try:
        warehouse.delete_many(keys)
    except Exception:  # noqa: BLE001 - the transaction's own error is the one to raise
        log.exception("could not remove %d objects of a failed image store; withdrawing the "
                      "patient, or the same images sent again, replaces or removes them",
                      len(keys))


# PostgreSQL's answers to two transactions that each wait for the other (deadlock detected)
# or that cannot both stand (serialization failure): the one it chose is rolled back, and
# the same transaction tried again goes in. SQLite has neither (one writer at a time).
LOCK_CONFLICTS = frozenset({"40P01", "40001"})
COMMIT_TRIES = 3  # a batch's transaction, tried again after such a conflict


def lock_conflict(exc: BaseException) -> bool:
    """``exc`` is PostgreSQL's deadlock or serialization failure (the database answers)."""
    while exc is not None:
        if getattr(exc, "sqlstate", None) in LOCK_CONFLICTS:
            return True
        exc = exc.__cause__
    return False


class ImageBatch:
    """Images stored together with one durability step and one transaction.

    ``add()`` starts writing an image and its header at once (temporary names, fsynced on a
    thread pool while the caller prepares the next image); ``commit()`` inserts the batch's
    rows, runs ``in_transaction`` (e.g. receipts) and publishes their objects (rename, one
    fsync per folder) in the same transaction: the commit stays the single point where an
    image becomes stored. A crash before it leaves at most unnamed temporaries or objects
    that a retry rewrites under the same keys. An image whose SOP UID another writer stored
    first is not published: its temporaries are removed and it comes back not created.

    Rows are locked in one order by every writer (images by SOP UID here, receipts by study
    in ``in_transaction``), so concurrent batches wait for each other instead of
    deadlocking; a deadlock left (PostgreSQL) rolls the transaction back, and it is tried
    again, ``COMMIT_TRIES`` times in all, before the objects are published.
    """

    def __init__(self, site) -> None:
        self.site = site
        self.warehouse = get_warehouse()
        self._writes = self.warehouse.batch()
        self._records: dict[str, ImageRecord] = {}
        self._sets: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._records)

    def assign_sets(self, pseudonyms: Iterable[str]) -> None:
        """Decide the sets of these patients at once (else ``add`` does it one by one)."""
        wanted = [p for p in pseudonyms if p not in self._sets]
        if wanted:
            self._sets.update(assign_sets(self.site, wanted))

    def add(self, pseudonym: str, data: Buffers, meta: ImageMeta, *, dataset=None,
            header: bytes | None = None, linked: bool = True,
            hospital_hash: str | None = None) -> bool:
        """Start storing one image; False if its SOP UID is already in this batch. Its header
        JSON is ``header`` if given, else made from ``dataset`` (or from the file);
        ``hospital_hash`` as ``store_image``'s."""
        if meta.sop_uid in self._records:
            return False
        if pseudonym not in self._sets:
            self._sets.update(assign_sets(self.site, [pseudonym]))
        parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
        record = _new_record(self.site, pseudonym, self._sets[pseudonym], b"", meta)
        record.size = sum(len(p) for p in parts)
        record.linked, record.hospital_hash = linked, hospital_hash
        self._writes.put(record.storage_key, parts)  # written while the header JSON is made
        if header is None:
            header = header_json(b"".join(parts) if dataset is None else None, dataset)
        self._writes.put(record.metadata_key, header)
        self._records[meta.sop_uid] = record
        return True

    def discard(self) -> None:
        """Give up the batch: wait for its writes and remove their temporaries."""
        self._writes.discard()
        self._records.clear()

    def commit(self, in_transaction: Callable[[list[StoredImage]], None] | None = None
               ) -> dict[str, StoredImage]:
        """Make the batch durable and recorded; SOP UID -> StoredImage.

        If the transaction fails after the objects were published, they are removed again
        (inside it, while the rows' locks still hold off a writer of the same images), so no
        object is left that no row names; an object stored under the same key before this
        batch stays."""
        ours: list[str] = []  # the keys this batch publishes, until removed on a failure
        stored_before: set[str] = set()
        try:
            digests = self._writes.digests()
            for record in self._records.values():
                record.sha256 = digests[record.storage_key]
            stored_before = self._stored_already()
            for tries in range(1, COMMIT_TRIES + 1):
                try:
                    with transaction.atomic():
                        results = self._insert()
                        if in_transaction is not None:
                            in_transaction(list(results.values()))
                        keys = [k for r in results.values() if r.created
                                for k in (r.record.storage_key, r.record.metadata_key)]
                        ours = keys
                        try:
                            self._writes.publish(keys)
                        except BaseException:
                            self._unpublish(self._added(keys, stored_before))
                            ours = []
                            raise
                    break
                except OperationalError as exc:
                    if ours or tries == COMMIT_TRIES or not lock_conflict(exc):
                        raise
                    log.warning("a batch of %d image(s) met a deadlock with another writer "
                                "(%s): its transaction is tried again", len(self._records),
                                type(exc.__cause__ or exc).__name__)
        except BaseException:
            self._unpublish(self._added(ours, stored_before))  # the commit itself failed
            raise
        finally:
            self._writes.discard()
        return results

    def _stored_already(self) -> set[str]:
        """On S3, the batch's keys already in the warehouse (one listing per folder). A local
        batch learns it as it publishes, from each rename (``WriteBatch.replaced``)."""
        if self.warehouse.is_local:
            return set()
        return self.warehouse.existing(k for r in self._records.values()
                                       for k in (r.storage_key, r.metadata_key))

    def _added(self, keys: list[str], stored_before: set[str]) -> list[str]:
        """Which of ``keys`` this batch added to the warehouse (never one stored before it)."""
        if self.warehouse.is_local:
            published = set(self._writes.published) - self._writes.replaced
            return [k for k in keys if k in published]
        return [k for k in keys if k not in stored_before]

    def _unpublish(self, keys: list[str]) -> None:
        """Remove objects this batch published for rows that were never committed."""
        _remove_unrecorded(self.warehouse, keys)

    def _insert(self) -> dict[str, StoredImage]:
        """Insert the batch's rows, in SOP UID order: two writers of the same images lock
        their unique index entries in the same order, so one waits for the other instead of
        each holding what the other needs (PostgreSQL's deadlock)."""
        records = sorted(self._records.values(), key=lambda r: r.sop_uid)
        for record in records:
            record.pk = None  # (a transaction tried again: no id from the one rolled back)
        try:
            with transaction.atomic():
                ImageRecord.objects.bulk_create(records, batch_size=_CHUNK)
            return {r.sop_uid: StoredImage(r, True) for r in records}
        except IntegrityError:  # another writer stored some first: theirs stand
            pass
        results = {}
        for record in records:
            try:
                with transaction.atomic():
                    record.save(force_insert=True)
                results[record.sop_uid] = StoredImage(record, True)
            except IntegrityError:
                record.pk = None
                results[record.sop_uid] = StoredImage(ImageRecord.objects.get(sop_uid=record.sop_uid),
                                                      False)
        return results


def store_images(site, items: Sequence[tuple[str, bytes, ImageMeta]], *,
                 linked: bool = True) -> list[StoredImage]:
    """``store_image`` for a batch ``[(pseudonym, data, meta), ...]``: a few queries, one
    durability step (concurrent PUTs on S3) and one transaction. Results are in input order."""
    sop_uids = [meta.sop_uid for _, _, meta in items]
    existing = {r.sop_uid: r for start in range(0, len(sop_uids), _CHUNK)
                for r in ImageRecord.objects.filter(sop_uid__in=sop_uids[start:start + _CHUNK])}
    batch = ImageBatch(site)
    for pseudonym, data, meta in items:
        if meta.sop_uid not in existing:
            batch.add(pseudonym, data, meta, linked=linked)
    stored = batch.commit() if len(batch) else {}
    results, seen = [], set()
    for _, _, meta in items:
        if meta.sop_uid in existing:
            results.append(StoredImage(existing[meta.sop_uid], False))
        elif meta.sop_uid in seen:
            results.append(StoredImage(stored[meta.sop_uid].record, False))
        else:
            results.append(stored[meta.sop_uid])
            seen.add(meta.sop_uid)
    return results


# -- clinical records ---------------------------------------------------------------------------
def clinical_json(cleaned: dict) -> bytes:
    return json.dumps(cleaned, sort_keys=True, indent=1, default=str).encode()


def write_clinical_records(site, records: Sequence) -> int:
    """Write each accepted record as ``{set}/data/<pseudonym>/<kind>-<SITE>.json``; returns the count.

    ``records`` are ``AcceptedRecord``-like (``pseudonym``, ``kind``, ``cleaned``). The patient's
    set is assigned first (a patient seen with clinical data before any image keeps that set).
    Under ``shift-dates`` the dates are moved by the patient's offset, as in their images.

    Withdrawn patients are left out: this runs after the sheet's commit, so a patient withdrawn
    in between would otherwise get their JSON and set back. The list is read again after
    writing, for a withdrawal that committed meanwhile and may have emptied the patient's
    folders before the write: what was written of them is removed at once (else by the sweep
    before the next catalogue refresh, if this process dies first).
    """
    withdrawn = _withdrawn(r.pseudonym for r in records)
    records = [r for r in records if r.pseudonym not in withdrawn]
    if not records:
        return 0
    sets = assign_sets(site, [r.pseudonym for r in records])
    shift = deployment_shift()
    objects = {layout.clinical_key(sets[r.pseudonym], r.pseudonym, r.kind, site.code):
               clinical_json(shift.clinical(r.pseudonym, r.cleaned)) for r in records}
    get_warehouse().write_many(objects)
    late = _withdrawn(sets)
    if late:
        _remove_withdrawn_meanwhile(late)
        objects = {key: data for key, data in objects.items() if key.split("/")[2] not in late}
        sets = {p: s for p, s in sets.items() if p not in late}
    pseudonyms = sorted(sets)
    for start in range(0, len(pseudonyms), _CHUNK):
        ImageRecord.objects.filter(pseudonym__in=pseudonyms[start:start + _CHUNK], linked=False).update(linked=True)
    _mark_written(site, [r for r in records if r.pseudonym in sets])
    return len(objects)


_MARK_CHUNK = 100  # records per marking query (three values each)


def _mark_written(site, records: Sequence) -> None:
    """Clear ``json_owed`` of these written records while they still have the digest written;
    one a later upload changed meanwhile is owed again (this write may have landed after its
    own writer's), so the upkeep writes it. Records without a digest are left as they are."""
    from nccid.clinical.models import ClinicalRecord

    done = [r for r in records if getattr(r, "digest", "")]
    for start in range(0, len(done), _MARK_CHUNK):
        chunk = done[start:start + _MARK_CHUNK]
        these, same = Q(), Q()
        for r in chunk:
            these |= Q(pseudonym=r.pseudonym, kind=r.kind)
            same |= Q(pseudonym=r.pseudonym, kind=r.kind, digest=r.digest)
        rows = ClinicalRecord.objects.filter(site=site, pseudonym__in={r.pseudonym for r in chunk})
        rows.filter(same, json_owed=True).update(json_owed=False)
        rows.filter(these, json_owed=False).exclude(same).update(json_owed=True)


OWED_PER_PASS = 5_000  # records the upkeep writes at most per pass; the rest at the next


def write_owed_clinical_json(limit: int = OWED_PER_PASS) -> int:
    """Write the JSON of clinical records committed without it (their upload's writer was
    killed, or the store was down): the upkeep of every catalogue refresh and of ``nccid run``
    between refreshes. One indexed query finds them (``json_owed``), not a listing of the
    warehouse. Withdrawn patients' records are left out (the sweep deletes them); returns how
    many were written."""
    from nccid.clinical.models import ClinicalRecord
    from nccid.withdrawal.models import Withdrawal

    owed = (ClinicalRecord.objects.filter(json_owed=True)
            .exclude(pseudonym__in=Withdrawal.objects.values("pseudonym"))
            .select_related("site").defer("data", "flags").order_by("pk")[:limit])
    by_site: dict = {}
    for record in owed:
        by_site.setdefault(record.site, []).append(record)
    written = sum(write_clinical_records(site, records) for site, records in by_site.items())
    if written:
        log.info("wrote %d clinical record(s) whose JSON an upload left unwritten", written)
    return written


def _withdrawn(pseudonyms: Iterable[str]) -> set[str]:
    from nccid.withdrawal.services import withdrawn_among

    return withdrawn_among(pseudonyms)


def _remove_withdrawn_meanwhile(pseudonyms: set[str]) -> None:
    from nccid.withdrawal.services import remove_late_arrivals

    remove_late_arrivals(pseudonyms)


def on_records_accepted(sender, site, records, **kwargs) -> None:
    """Receiver of ``nccid.clinical.signals.records_accepted`` (connected in ``apps.ready``).

    The records are already committed; a storage failure is logged (counts only, never a
    value) instead of failing the upload, and repaired by the next catalogue refresh's upkeep
    (``write_owed_clinical_json``) or ``nccid warehouse sync-clinical``.
    """
    try:
        written = write_clinical_records(site, records)
    except Exception as exc:
        # One line: an unreachable store is an outage, not a bug (the error's text may hold
        # an object key, so a pseudonym: its class only; the traceback at debug level).
        log.error("clinical JSON not written for %d record(s) of site %s (%s); the next "
                  "catalogue refresh writes it (or run 'nccid warehouse sync-clinical')",
                  len(records), site.code, type(exc).__name__)
        log.debug("clinical JSON write failure", exc_info=True)
        return
    log.info("wrote %d clinical record(s) of site %s to the warehouse", written, site.code)


def sync_clinical(on_progress: Progress | None = None) -> int:
    """Rewrite every clinical record's JSON from the database (repair after a failed write, or
    a warehouse written before clinical dates were shifted under ``shift-dates``), then stamp
    them all as written under the deployment's date rule (``upgrade``);
    ``on_progress(records written, records in all)`` after each batch."""
    from nccid.clinical.models import ClinicalRecord

    from .upgrade import record_clinical_rule

    shifts = deployment_shift().shifts  # read first: a record written meanwhile follows it too
    records_in_all = ClinicalRecord.objects.count()
    total = 0
    by_site: dict = {}

    def write(site, records) -> None:
        nonlocal total
        total += write_clinical_records(site, records)
        if on_progress:
            on_progress(total, records_in_all)

    for record in ClinicalRecord.objects.select_related("site").iterator(chunk_size=2000):
        by_site.setdefault(record.site, []).append(record)
        if len(by_site[record.site]) >= 2000:
            write(record.site, by_site.pop(record.site))
    for site, records in by_site.items():
        write(site, records)
    record_clinical_rule(shifts)
    return total


# -- catalogue (implemented in catalogue.py; named here as the contract lists it) --------------
def refresh_catalogue(**kwargs):
    from .catalogue import refresh_catalogue as refresh

    return refresh(**kwargs)


def connect_catalogue(read_only: bool = True, **kwargs):
    from .catalogue import connect_catalogue as connect

    return connect(read_only=read_only, **kwargs)


def catalogue_dir():
    from .catalogue import catalogue_dir as directory

    return directory()


# -- integrity ----------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    checked: int = 0
    mismatched: list[str] | None = None  # keys whose bytes no longer match size or checksum
    missing: list[str] | None = None     # keys the catalogue names but the store lacks
    in_catalogue: int = 0                # images the catalogue lists
    in_database: int = 0                 # images the database says are catalogued

    @property
    def counts_differ(self) -> bool:
        """The catalogue read is not the one the database describes (a wrong or stale store)."""
        return self.in_catalogue != self.in_database

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.missing and not self.counts_differ


def verify_objects(sample: int | None = 200, seed: int = 0,
                   on_progress: Progress | None = None, *,
                   leave_out: Iterable[str] = (),
                   leave_out_studies: Iterable[str] = ()) -> VerifyReport:
    """Re-read and re-hash stored images against the catalogue (a sample, or all with None),
    and compare how many images the catalogue lists with how many the database catalogued
    (not counting ``leave_out``, withdrawn patients, and ``leave_out_studies``, removed
    studies, that a restored database still holds); ``on_progress(images checked, images to
    check)`` after each image."""
    con = connect_catalogue()
    report = VerifyReport(0, [], [])
    report.in_catalogue = con.execute("SELECT count(*) FROM images").fetchone()[0]
    report.in_database = (ImageRecord.objects.exclude(catalogue_part=None)
                          .exclude(pseudonym__in=sorted(leave_out))
                          .exclude(study_uid__in=sorted(leave_out_studies)).count())
    query = "SELECT storage_key, size, sha256 FROM images"
    if sample is not None:
        query += f" USING SAMPLE reservoir({int(sample)} ROWS) REPEATABLE ({int(seed)})"
    rows = con.execute(query + " ORDER BY storage_key").fetchall()
    warehouse = get_warehouse()
    for key, size, digest in rows:
        report.checked += 1
        if not warehouse.exists(key):
            report.missing.append(key)
        elif warehouse.size(key) != size or warehouse.sha256(key) != digest:
            report.mismatched.append(key)
        if on_progress:
            on_progress(report.checked, len(rows))
    return report


def clinical_records_without_json(leave_out: Iterable[str] = ()) -> int:
    """How many clinical records lack their JSON in the warehouse (an import stopped before
    writing it, or the store was down; ``sync_clinical`` writes them): one listing of each
    set's ``data`` folder against the database. A record accepted a moment ago may count;
    those of ``leave_out`` (withdrawn patients a restored database still holds) do not."""
    from nccid.clinical.models import ClinicalRecord

    warehouse = get_warehouse()
    present = {key for name in layout.SETS for key in warehouse.iter_keys(f"{name}/data")}
    sets = dict(PatientSet.objects.values_list("pseudonym", "set_name"))
    leave_out = set(leave_out)
    return sum(
        pseudonym not in sets
        or layout.clinical_key(sets[pseudonym], pseudonym, kind, code) not in present
        for pseudonym, kind, code in ClinicalRecord.objects.values_list(
            "pseudonym", "kind", "site__code").iterator(chunk_size=2000)
        if pseudonym not in leave_out)


def objects_no_row_names() -> dict[str, int]:
    """Objects in the sets' folders that no database row names (an image or its header JSON no
    image row names, a clinical JSON no clinical record has), counted by patient (the pseudonym
    in the key): databases older than the warehouse (restored from a backup), or an intake
    killed between publishing its objects and committing. Researchers never see them (the
    catalogue is built from the database) and nothing else would tell. One listing of each set,
    and a query per 500 images (by their indexed SOP Instance UID)."""
    from collections import Counter

    from nccid.clinical.models import ClinicalRecord

    sets = dict(PatientSet.objects.values_list("pseudonym", "set_name"))
    clinical = {layout.clinical_key(sets[p], p, kind, code) for p, kind, code
                in ClinicalRecord.objects.values_list("pseudonym", "kind", "site__code")
                .iterator(chunk_size=2000) if p in sets}
    found: Counter = Counter()
    images: list[str] = []
    for set_name in layout.SETS:
        for key in get_warehouse().iter_keys(set_name):
            parts = key.split("/")
            if len(parts) < 4 or not key.endswith((".dcm", ".json")):  # a folder, on S3
                continue
            if parts[1] == "data":  # clinical JSON
                if key not in clinical:
                    found[parts[2]] += 1
                continue
            images.append(key)
            if len(images) >= _CHUNK:
                _count_unnamed_images(images, found)
                images = []
    _count_unnamed_images(images, found)
    return dict(found)


def _count_unnamed_images(keys: list[str], found) -> None:
    """Count, by patient, those of these image and header keys that no image row names."""
    sop_uids = {key.rsplit("/", 1)[-1].rsplit(".", 1)[0] for key in keys}
    named = {key for pair in ImageRecord.objects.filter(sop_uid__in=sop_uids)
             .values_list("storage_key", "metadata_key") for key in pair}
    found.update(key.split("/")[2] for key in keys if key not in named)


def uncatalogued_images() -> int:
    """Stored images the catalogue does not show yet (until the next refresh)."""
    return ImageRecord.objects.filter(catalogue_part=None).count()


def clinical_changed_since(as_of: datetime | None, margin: timedelta = timedelta(0)) -> QuerySet:
    """Clinical records created or changed since the catalogue refresh written at ``as_of``
    (every record before the first refresh): the catalogue shows them as they were, or not at
    all, until the next refresh. Records carry no catalogue mark as images do, so their time
    tells; ``margin`` also takes those changed that long before it, for a save that committed
    after the refresh had read the table (``refresher.catalogue_behind``)."""
    from nccid.clinical.models import ClinicalRecord

    records = ClinicalRecord.objects.all()
    return records if as_of is None else records.filter(updated__gt=as_of - margin)
