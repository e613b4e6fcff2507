"""Withdrawing a patient: everything of theirs leaves the database, and stays out.

A withdrawal (the patient objects, consent is withdrawn, or a site sent the wrong person)
removes, for one pseudonym: the images, their header JSON and the clinical JSON from the
warehouse; the image, clinical, held, pending-image, teaching-case and set rows from the main
database; the vault entry; and the patient's rows from the catalogue, which is refreshed twice
so that no Parquet file of the previous version names them either. The site's receipts stay,
emptied and marked removed, so a site still sees what it sent and what became of it.

The pseudonym stays on the withdrawal list (who, when, why) and intake refuses the patient
from then on, whatever the site or the way in (DICOM node, import, portal, spreadsheet). The
site-scoped links from hospital numbers to the pseudonym are kept for the same reason: an
image that names the patient only by hospital number is still recognised and refused. Images
sent by a hospital number no link names yet cannot be found; a later sheet row pairing the
number with the patient is refused and removes them (``remove_waiting_by_hospital_number``). The
patient's set is kept too (``KeptSet``), so a reinstated patient returns to the same set.

Order: the list entry first, committed, so intake stops taking the patient; then objects
before rows, so a crash can leave rows naming missing objects (a re-run removes them) but never
objects that no row names; and the patient's folders are emptied by listing them too, for
objects an intake published before its transaction failed. The set, a start event and the
counts are recorded as it goes. Withdrawing again completes an interrupted withdrawal, and every
catalogue refresh sweeps withdrawn patients first, so data that raced the withdrawal into
the database never reaches researchers; research reads leave listed patients out meanwhile.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from nccid.accounts.models import AuditEvent, audit, reidentifying_refused
from nccid.identity.numbers import InvalidPatientNumber
from nccid.identity.reasons import identifier_in_reason
from nccid.identity.service import normalise_pseudonym, pseudonymise

from .models import ReinstatedWithdrawal, StudyWithdrawal, Withdrawal
from .study_holdings import StudyHoldings, study_holdings

log = logging.getLogger("nccid.withdrawal")

# What intake tells a site that sends a withdrawn patient (no identifier, no date).
REFUSAL = "not kept: this patient has been withdrawn from the database"
# What a site's receipt of a removed study says.
REMOVED = "removed: the patient was withdrawn from the database"
# Audited actions that hand data out: to researchers (exports, datasets, image lists) and the
# validation images a data manager runs an AI product on (cohort counts and validation scores
# do not).
HANDED_OUT = ("research.export", "research.open", "research.list", "research.modelling",
              "research.teaching.export", "research.validate.images")
_CHUNK = 500


class WithdrawalError(Exception):
    """A withdrawal that cannot be made as asked; the message says why (never a number)."""


@dataclass(frozen=True)
class HandedOut:
    """Data given to a researcher while the patient was in the database (audited)."""

    at: datetime
    username: str
    action: str
    sets: tuple[str, ...]


@dataclass(frozen=True)
class Holdings:
    """What the database holds of one patient, and who may have received it."""

    pseudonym: str
    images: int = 0
    studies: int = 0
    bytes: int = 0
    clinical_records: int = 0
    held: int = 0
    pending: int = 0
    teaching_cases: int = 0
    sites: tuple[str, ...] = ()
    set_name: str | None = None
    first_arrived: datetime | None = None
    handed_out: tuple[HandedOut, ...] = ()
    withdrawal: Withdrawal | None = None
    objects: int = 0  # in the patient's warehouse folders
    unnamed_objects: int = 0  # of those, named by no row (a database older than the warehouse)
    found: bool = True  # named by a row or a warehouse object (``look_up`` says when not)

    @property
    def empty(self) -> bool:
        return not (self.images or self.clinical_records or self.held or self.pending
                    or self.teaching_cases or self.objects)


@dataclass
class Removed:
    """What one withdrawal removed (counts only)."""

    images: int = 0
    objects: int = 0
    clinical_records: int = 0
    held: int = 0
    pending: int = 0
    teaching_cases: int = 0
    receipts: int = 0
    vault_entries: int = 0
    sets: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        counts = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return {**counts, **self.extra}


# -- who ------------------------------------------------------------------------------------
def patient_pseudonym(text: str) -> str:
    """The pseudonym of a patient named by NHS/CHI number or by pseudonym (with the key file:
    a database that no longer knows the number still finds the patient's warehouse folders)."""
    pseudonym = normalise_pseudonym(text)
    if pseudonym:
        return pseudonym
    try:
        return pseudonymise((text or "").strip())[0]
    except InvalidPatientNumber:
        raise WithdrawalError("enter the patient's NHS/CHI number (with a valid check digit) "
                              "or their pseudonym, like NCCID-ABCDEFGHIJKLMNOP") from None


def withdrawn_among(pseudonyms: Iterable[str]) -> set[str]:
    """Those of these patients on the withdrawal list (a query per 500), or marked withdrawn in
    the warehouse (``markers``: a database restored from before their withdrawal, until the
    withdrawal is re-applied; one listing, only for patients the list does not name)."""
    from .markers import marked

    wanted = {p for p in pseudonyms if p}
    found = _listed(Withdrawal, "pseudonym", wanted)
    if wanted - found:
        found |= (wanted - found) & _marked(marked, "withdrawal")
    return found


def listed_withdrawn(pseudonyms: Iterable[str]) -> set[str]:
    """Those of these patients on the database's withdrawal list only (no warehouse listing:
    for checks made often, such as each patient a linker links, which the refresh's sweep
    backs up; none asked while nothing was ever withdrawn)."""
    return _listed(Withdrawal, "pseudonym", pseudonyms)


def listed_removed_studies(study_uids: Iterable[str]) -> set[str]:
    """Those of these studies on the database's list of removed studies only (as above)."""
    return _listed(StudyWithdrawal, "study_uid", study_uids)


def _marked(listing: Callable[[], set[str]], what: str) -> set[str]:
    """The warehouse's markers (``listing``); none when it cannot be read: the database's list
    stands, and a restored database is caught by ``nccid init``, verify and every catalogue
    refresh."""
    try:
        return listing()
    except Exception as exc:  # noqa: BLE001 - any store failure (botocore raises many kinds)
        log.warning("could not read the warehouse's %s markers (%s): checked against the "
                    "database's list only", what, type(exc).__name__)
        return set()


def _listed(model, field: str, values: Iterable[str]) -> set[str]:
    """Those of ``values`` that a row of ``model`` names in ``field`` (none asked of an empty list)."""
    wanted = sorted({v for v in values if v})
    if not wanted or not model.objects.exists():
        return set()
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        found.update(model.objects.filter(**{f"{field}__in": wanted[start:start + _CHUNK]})
                     .values_list(field, flat=True))
    return found


# -- what is held ---------------------------------------------------------------------------
def _links(pseudonym: str) -> list[tuple[int, str]]:
    from nccid.clinical.models import PatientLink

    return list(PatientLink.objects.filter(pseudonym=pseudonym)
                .values_list("site_id", "hospital_hash"))


def _by_hospital_number(links: list[tuple[int, str]]) -> Q | None:
    query = None
    for site_id, hospital_hash in links:
        one = Q(site_id=site_id, hospital_hash=hospital_hash)
        query = one if query is None else query | one
    return query


def _held_query(pseudonym: str, links):
    from nccid.imaging.models import HeldImage

    query = Q(pseudonym=pseudonym)
    by_number = _by_hospital_number(links)
    return HeldImage.objects.filter(query | by_number if by_number is not None else query)


def _pending_query(links):
    from nccid.imaging.models import PendingImage

    by_number = _by_hospital_number(links)
    return PendingImage.objects.filter(by_number) if by_number is not None else PendingImage.objects.none()


def holdings(pseudonym: str) -> Holdings:
    """What the database holds of ``pseudonym`` (to show before withdrawing)."""
    from nccid.clinical.models import ClinicalRecord
    from nccid.research.models import TeachingCase
    from nccid.warehouse.models import ImageRecord, PatientSet

    links = _links(pseudonym)
    images = ImageRecord.objects.filter(pseudonym=pseudonym)
    clinical = ClinicalRecord.objects.filter(pseudonym=pseudonym)
    totals = images.aggregate(bytes=Sum("size"))
    sites = (set(images.values_list("site__code", flat=True).distinct())
             | set(clinical.values_list("site__code", flat=True).distinct()))
    arrivals = [d for d in (images.order_by("received_at").values_list("received_at", flat=True).first(),
                            clinical.order_by("created").values_list("created", flat=True).first())
                if d is not None]
    set_name = PatientSet.objects.filter(pseudonym=pseudonym).values_list("set_name", flat=True).first()
    first = min(arrivals) if arrivals else None
    objects = _objects_of(pseudonym)
    unnamed = _unnamed(pseudonym, objects)
    return Holdings(
        pseudonym=pseudonym,
        images=images.count(),
        studies=images.values("study_uid").distinct().count(),
        bytes=totals["bytes"] or 0,
        clinical_records=clinical.count(),
        held=_held_query(pseudonym, links).filter(file_name__gt="").count(),
        pending=_pending_query(links).count(),
        teaching_cases=TeachingCase.objects.filter(pseudonym=pseudonym).count(),
        sites=tuple(sorted(sites)),
        set_name=set_name,
        first_arrived=first,
        handed_out=_handed_out(first, set_name),
        withdrawal=Withdrawal.objects.filter(pseudonym=pseudonym).first(),
        objects=len(objects),
        unnamed_objects=len(unnamed),
    )


def _objects_of(pseudonym: str) -> list[str]:
    """Every object in the patient's warehouse folders (``{set}/{folder}/{pseudonym}/``): a
    listing of each set and of each of its folders for the patient."""
    from nccid.warehouse.service import get_warehouse

    warehouse = get_warehouse()
    return [key for prefix in _patient_prefixes(warehouse, pseudonym)
            for key in warehouse.list(prefix) if key != prefix]


def _unnamed(pseudonym: str, keys: list[str]) -> list[str]:
    """Those of the patient's ``keys`` no row of the database names (an image, its header, a
    clinical record's JSON): a database restored from a backup older than the warehouse."""
    from nccid.clinical.models import ClinicalRecord
    from nccid.warehouse.layout import clinical_key
    from nccid.warehouse.models import ImageRecord, PatientSet

    named = {key for pair in ImageRecord.objects.filter(pseudonym=pseudonym)
             .values_list("storage_key", "metadata_key") for key in pair}
    set_name = PatientSet.objects.filter(pseudonym=pseudonym).values_list("set_name", flat=True).first()
    if set_name:
        named |= {clinical_key(set_name, pseudonym, kind, site)
                  for kind, site in ClinicalRecord.objects.filter(pseudonym=pseudonym)
                  .values_list("kind", "site__code")}
    return [key for key in keys if key not in named]


UNKNOWN_PATIENT = ("nothing in the database or the warehouse names this patient: check the "
                   "NHS/CHI number or pseudonym")


def look_up(user, pseudonym: str, *, unknown_ok: bool = False) -> Holdings:
    """``holdings`` for a data manager, audited whether the patient is found or not (``found``):
    finding a patient by number tells whether they are in the database, so every look-up is
    recorded like a vault reveal. A patient nothing names (a typing error, most likely) is
    refused unless ``unknown_ok`` (a patient not yet sent, withdrawn with ``--force``), in
    words that do not show the pseudonym: one worked out from a number typed is shown only
    for a patient the database or the warehouse holds."""
    refused = reidentifying_refused(user, "patient.look-up", "look a patient up")
    if refused:  # a number typed becomes a pseudonym here: not for administrators
        raise WithdrawalError(refused)
    found = is_named(pseudonym)
    audit(user, "patient.look-up", pseudonym=pseudonym, found=found)
    if not found and not unknown_ok:
        raise WithdrawalError(UNKNOWN_PATIENT)
    return replace(holdings(pseudonym), found=found)


def _handed_out(since: datetime | None, set_name: str | None) -> tuple[HandedOut, ...]:
    """Research hand-outs since the patient's data first arrived that could include it."""
    if since is None:
        return ()
    found = []
    for event in AuditEvent.objects.filter(action__in=HANDED_OUT, at__gte=since).order_by("at"):
        sets = tuple(event.detail.get("sets") or ())
        if set_name is None or not sets or set_name in sets:
            found.append(HandedOut(event.at, event.username, event.action, sets))
    return tuple(found)


# -- withdrawing ----------------------------------------------------------------------------
# Where each request's reason is kept, as a missing reason's error says.
REASON_KEPT = {"withdraw a patient": "with the withdrawal",
               "reinstate a patient": "in the audit log",
               "remove a study": "with the removal of the study"}


# The audited action of each request, whose refusal is audited as ``<action>.denied``.
REQUEST_ACTION = {"withdraw a patient": "patient.withdraw",
                  "reinstate a patient": "patient.reinstate",
                  "remove a study": "study.remove"}


def _check_request(user, reason: str, what: str = "withdraw a patient") -> str:
    refused = reidentifying_refused(user, REQUEST_ACTION[what], what)
    if refused:
        raise WithdrawalError(refused)
    return check_reason(reason, REASON_KEPT[what])


def check_reason(reason: str, kept: str = REASON_KEPT["withdraw a patient"]) -> str:
    """The reason, stripped; WithdrawalError if empty (saying it is kept ``kept``) or seeming
    to hold an identifier (an NHS/CHI or hospital number, a date: ``identity.reasons``),
    checked before anything is shown or asked, so a bad reason costs no confirmation."""
    reason = (reason or "").strip()
    if not reason:
        raise WithdrawalError(f"a reason is required (it is kept {kept})")
    problem = identifier_in_reason(reason)
    if problem:
        raise WithdrawalError(problem)
    return reason


def named_anywhere(pseudonym: str) -> bool:
    """Whether anything held names ``pseudonym``: a link, a receipt, an image (stored or held),
    a clinical record, a vault entry, a teaching case, a set (kept or current), a withdrawal
    (current or reinstated)."""
    from nccid.clinical.models import ClinicalRecord, PatientLink
    from nccid.identity.models import VaultEntry
    from nccid.imaging.models import HeldImage, StudyReceipt
    from nccid.research.models import TeachingCase
    from nccid.warehouse.models import ImageRecord, KeptSet, PatientSet

    return any(model.objects.filter(**{field: pseudonym}).exists() for model, field in (
        (Withdrawal, "pseudonym"), (PatientLink, "pseudonym"), (StudyReceipt, "patient"),
        (ImageRecord, "pseudonym"), (HeldImage, "pseudonym"), (ClinicalRecord, "pseudonym"),
        (VaultEntry, "pseudonym"), (TeachingCase, "pseudonym"), (PatientSet, "pseudonym"),
        (KeptSet, "pseudonym"), (ReinstatedWithdrawal, "pseudonym")))


def is_named(pseudonym: str) -> bool:
    """Whether anything names ``pseudonym``: a row (``named_anywhere``) or an object in the
    patient's warehouse folders (a database restored from a backup older than the warehouse
    knows nothing of them; the withdrawal removes them). Unnamed is most likely a typing
    error: the command line then withdraws only with ``--force``, the page never."""
    return named_anywhere(pseudonym) or bool(_objects_of(pseudonym))


def withdraw(user, pseudonym: str, reason: str, *, refresh: bool = True) -> Removed:
    """Withdraw a patient: remove everything of theirs and refuse them from now on.

    Running it again for a withdrawn patient completes what an interrupted run left. The
    patient's set and the counts are saved after every step, so an interrupted run still
    tells researchers (``withdrawn_for``) and the re-run adds to what the first removed."""
    reason = _check_request(user, reason)
    if not normalise_pseudonym(pseudonym):
        raise WithdrawalError("not a pseudonym")
    return _withdraw(pseudonym, user, reason, refresh=refresh)


def withdraw_as_system(pseudonym: str, withdrawn_at: datetime, reason: str) -> Removed:
    """A withdrawal the warehouse marks and the database lacks, made again (``markers.reapply``):
    listed as of ``withdrawn_at`` by ``system``; the caller refreshes the catalogue."""
    return _withdraw(pseudonym, "system", reason, requested_at=withdrawn_at, refresh=False,
                     action="patient.withdraw.reapplied")


def _list_entry(model, by, reason: str, requested_at: datetime | None, **key):
    """The list entry (``Withdrawal`` or ``StudyWithdrawal``) of ``key``, and whether it is
    new; ``by`` is an account or "system" (a marked one made again)."""
    defaults = {"requested_by": getattr(by, "username", None) or str(by), "reason": reason}
    if requested_at is not None:
        defaults["requested_at"] = requested_at
    return model.objects.get_or_create(**key, defaults=defaults)


def _withdraw(pseudonym: str, by, reason: str, *, requested_at: datetime | None = None,
              refresh: bool = True, action: str | None = None) -> Removed:
    from .markers import write_marker

    entry, created = _list_entry(Withdrawal, by, reason, requested_at, pseudonym=pseudonym)
    # before anything is deleted: a database restored from an older backup cannot forget it
    write_marker(pseudonym, entry.requested_at)
    earlier = {k: v for k, v in entry.removed.items() if isinstance(v, int)}
    set_name = _set_of(pseudonym, entry)
    removed = Removed()

    def save_counts() -> None:
        totals = {k: v + earlier.get(k, 0) for k, v in removed.as_dict().items()}
        Withdrawal.objects.filter(pk=entry.pk).update(removed={**totals, "set_name": set_name})

    save_counts()  # the set is recorded before anything is deleted
    action = action or ("patient.withdraw" if created else "patient.withdraw.again")
    audit(by, f"{action}.start", pseudonym=pseudonym, reason=reason)
    purge(pseudonym, removed, after_step=save_counts)
    if refresh:
        _refresh_catalogue_twice()
    _sweep_export_staging()
    Withdrawal.objects.filter(pk=entry.pk).update(completed_at=timezone.now())
    audit(by, action, pseudonym=pseudonym, reason=reason, **removed.as_dict())
    log.info("withdrew %s: %s", pseudonym, removed.as_dict())
    return removed


def _sweep_export_staging() -> None:
    """Exports killed mid-way left their staging folders (cohort tables, images) on this host;
    a withdrawal removes them too rather than wait for the next process start or export."""
    from nccid.research.staging import sweep_at_start

    sweep_at_start()


def _set_of(pseudonym: str, entry: Withdrawal) -> str | None:
    """The patient's set, for researchers' feed: current, else recorded by an earlier run,
    else the one kept when the set row was retired."""
    from nccid.warehouse.models import KeptSet, PatientSet

    return (PatientSet.objects.filter(pseudonym=pseudonym).values_list("set_name", flat=True).first()
            or entry.removed.get("set_name")
            or KeptSet.objects.filter(pseudonym=pseudonym).values_list("set_name", flat=True).first()
            or _set_of_objects(pseudonym))


def _set_of_objects(pseudonym: str) -> str | None:
    """The set whose folders hold the patient's objects, for a patient the database does not
    know (restored from an older backup): researchers may have had them before the restore."""
    keys = _objects_of(pseudonym)
    return keys[0].split("/", 1)[0] if keys else None


def reinstate(user, pseudonym: str, reason: str) -> bool:
    """Take a patient off the withdrawal list (intake accepts them again); False if not on it.

    Nothing removed comes back: the site must send it again. An interrupted withdrawal is
    refused: what it had not yet removed would go back to researchers, half a patient. The
    withdrawal is kept as reinstated, so researchers' feed (``withdrawn_for``) still lists it."""
    from .markers import remove_marker

    reason = _check_request(user, reason, "reinstate a patient")
    entry = Withdrawal.objects.filter(pseudonym=pseudonym).first()
    if entry is None:
        return False
    if entry.completed_at is None:
        raise WithdrawalError(f"the withdrawal of {pseudonym} was interrupted: complete the "
                              "withdrawal first (withdraw the patient again), then reinstate")
    # the marker first: one left behind by a failure below would re-apply the withdrawal
    remove_marker(pseudonym)
    with transaction.atomic():
        ReinstatedWithdrawal.objects.create(pseudonym=pseudonym, requested_at=entry.requested_at,
                                            reinstated_by=user.username, removed=entry.removed)
        entry.delete()
    audit(user, "patient.reinstate", pseudonym=pseudonym, reason=reason)
    return True


def _refresh_catalogue_twice() -> None:
    """The first refresh drops the rows; the second drops the files of the version before,
    which a refresh keeps for readers that opened it."""
    from nccid.warehouse.catalogue import prune_catalogue_cache, refresh_catalogue

    refresh_catalogue()
    refresh_catalogue()
    prune_catalogue_cache()  # this host's copies of the files of the version before go too


def purge(pseudonym: str, removed: Removed | None = None, *,
          after_step: Callable[[], None] | None = None) -> Removed:
    """Remove everything held of ``pseudonym`` except its withdrawal entry and its links,
    counting into ``removed``; ``after_step`` runs after each kind of thing is removed."""
    removed = Removed() if removed is None else removed
    links = _links(pseudonym)
    for step in (lambda: _purge_waiting(pseudonym, links, removed),
                 lambda: _purge_images(pseudonym, removed),
                 lambda: _purge_objects(pseudonym, removed),
                 lambda: _purge_clinical(pseudonym, removed),
                 lambda: _purge_previews(pseudonym, removed),
                 lambda: _purge_research(pseudonym, removed),
                 lambda: _mark_receipts(pseudonym, links, removed),
                 lambda: _purge_identity(pseudonym, removed)):
        step()
        if after_step is not None:
            after_step()
    return removed


def _purge_waiting(pseudonym: str, links, removed: Removed) -> None:
    from nccid.imaging.intake import sweep_temporaries

    _delete_waiting({"held": _held_query(pseudonym, links), "pending": _pending_query(links)},
                    removed)
    # a writer killed mid-write left an encrypted temporary no row names, perhaps this patient's
    sweep_temporaries()


def _delete_waiting(queries: dict, removed: Removed) -> None:
    """Held and pending images ({counter: query}): encrypted files first, then their rows."""
    from nccid.imaging.intake import remove_encrypted

    for counter, query in queries.items():
        rows = list(query.values_list("pk", "file_name", "site_id", "study_uid", "sop_uid"))
        _count_as_refused(row[2:] for row in rows)
        for pk, name, *_ in rows:
            remove_encrypted(name)
            if name:
                setattr(removed, counter, getattr(removed, counter) + 1)
            query.model.objects.filter(pk=pk).delete()


def _count_as_refused(instances: Iterable[tuple[int, str, str]]) -> None:
    """Removed instances ((site id, study UID, SOP UID)) are counted refused in their receipts
    once (``_mark_removed`` counts them): sent again, they are not counted a second time; stored
    after a reinstatement, their refusal is taken back (``intake.take_back_refusals``)."""
    from nccid.imaging.models import RefusedInstance

    RefusedInstance.objects.bulk_create(
        [RefusedInstance(site_id=site_id, study_uid=study_uid, sop_uid=sop_uid)
         for site_id, study_uid, sop_uid in instances],
        ignore_conflicts=True, batch_size=_CHUNK)


def _purge_images(pseudonym: str, removed: Removed) -> None:
    from nccid.warehouse.models import ImageRecord

    _delete_images(ImageRecord.objects.filter(pseudonym=pseudonym), removed)


def _delete_images(images, removed: Removed) -> None:
    """Stored images: their objects and header JSON, then their rows (other images of the same
    catalogue parts are catalogued again)."""
    from nccid.warehouse.models import ImageRecord
    from nccid.warehouse.service import get_warehouse

    warehouse = get_warehouse()
    rows = list(images.values_list("pk", "storage_key", "metadata_key", "catalogue_part",
                                   "site_id", "study_uid", "sop_uid"))
    removed.objects += warehouse.delete_many(key for _pk, data, header, *_ in rows
                                             for key in (data, header))
    parts = {row[3] for row in rows if row[3] is not None}
    ids = [pk for pk, *_ in rows]
    with transaction.atomic():
        _count_as_refused(row[4:] for row in rows)
        (ImageRecord.objects.filter(catalogue_part__in=parts).exclude(pk__in=ids)
         .update(catalogue_part=None))
        for start in range(0, len(ids), _CHUNK):
            removed.images += ImageRecord.objects.filter(pk__in=ids[start:start + _CHUNK]).delete()[0]


def _purge_objects(pseudonym: str, removed: Removed) -> None:
    """Every object under the patient's folders, whether or not a row names it: images an
    intake published before its transaction failed, clinical JSON, temporaries."""
    from nccid.warehouse.service import get_warehouse

    warehouse = get_warehouse()
    for prefix in _patient_prefixes(warehouse, pseudonym):
        # (an S3 listing of an emptied folder may name the folder itself: not an object)
        removed.objects += warehouse.delete_many(k for k in warehouse.list(prefix) if k != prefix)
        if warehouse.is_local:
            _remove_local_folder(Path(warehouse.root) / prefix)
    warehouse.sweep_temporaries()  # a killed writer's journal names its folders, perhaps these


def _patient_prefixes(warehouse, pseudonym: str) -> list[str]:
    """``{set}/{folder}/{pseudonym}`` for every folder of both sets (images, headers, data)."""
    from nccid.warehouse.layout import SETS

    prefixes = []
    for set_name in SETS:
        try:
            folders = warehouse.fs.ls(f"{warehouse.root}/{set_name}", detail=False, refresh=True)
        except FileNotFoundError:
            continue
        prefixes += [f"{set_name}/{folder.rstrip('/').rsplit('/', 1)[-1]}/{pseudonym}"
                     for folder in folders]
    return prefixes


def _remove_local_folder(folder: Path) -> None:
    """The patient's emptied folder, with any temporaries an interrupted write left in it."""
    def gone_already(_function, _path, exc_info) -> None:
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]

    if folder.is_dir():
        shutil.rmtree(folder, onerror=gone_already)


def _purge_clinical(pseudonym: str, removed: Removed) -> None:
    """The clinical rows (their JSON went with the patient's folders)."""
    from nccid.clinical.models import ClinicalRecord

    records = ClinicalRecord.objects.filter(pseudonym=pseudonym)
    removed.clinical_records += records.count()
    records.delete()  # their earlier versions go with them


def _purge_previews(pseudonym: str, removed: Removed) -> None:
    """Checked spreadsheets waiting for confirmation keep their rows and sealed numbers; the
    hospital numbers they give the patient name the site's images waiting for a link."""
    from nccid.clinical.services import forget_in_previews

    previews = forget_in_previews(pseudonym)
    if previews:
        removed.extra["checked_uploads"] = removed.extra.get("checked_uploads", 0) + len(previews)
    for site, hashes in previews:  # a checked sheet pairs these numbers with the patient
        _remove_waiting_of(site, pseudonym, hashes, removed)


def _purge_research(pseudonym: str, removed: Removed) -> None:
    from nccid.research.models import TeachingCase

    removed.teaching_cases += TeachingCase.objects.filter(pseudonym=pseudonym).delete()[0]


def _mark_receipts(pseudonym: str, links, removed: Removed) -> None:
    from nccid.imaging.models import StudyReceipt

    names = {pseudonym} | {hospital_hash for _, hospital_hash in links}
    _mark_removed(StudyReceipt.objects.filter(patient__in=names), REMOVED, removed)


def _mark_removed(receipts, problem: str, removed: Removed) -> None:
    """The sites' receipts stay, emptied, saying why (a site sees what became of what it sent)."""
    from nccid.imaging.intake import refresh_receipt_status

    pending = receipts.exclude(problem=problem, stored=0, pending=0, held=0)
    removed.receipts += pending.update(stored=0, pending=0, held=0, rejected=F("instances"),
                                       has_clinical=False, problem=problem)
    refresh_receipt_status(receipts)


# -- images waiting under a hospital number no link names -----------------------------------
def remove_waiting_by_hospital_number(site, numbers: dict[str, str], by) -> dict[str, Removed]:
    """A sheet of ``site`` pairs hospital numbers (keyed hashes: ``{hash: pseudonym}``) with
    withdrawn patients, and its rows are refused: the images the site sent by those numbers
    that wait for a link or are held for review are the patient's, so the withdrawal covers
    them. They go as the withdrawal's own do (``_remove_waiting_of``), counted on the
    withdrawal and audited (``patient.withdraw.waiting``). What was removed, by pseudonym."""
    by_patient: dict[str, list[str]] = {}
    for hospital_hash, pseudonym in numbers.items():
        by_patient.setdefault(pseudonym, []).append(hospital_hash)
    done = {}
    for pseudonym, hashes in by_patient.items():
        removed = Removed()
        if _remove_waiting_of(site, pseudonym, hashes, removed):
            _count_on_withdrawal(pseudonym, removed)
            audit(by, "patient.withdraw.waiting", pseudonym=pseudonym, site=site.code,
                  **removed.as_dict())
            log.info("removed images of withdrawn %s waiting at %s: %s", pseudonym, site.code,
                     removed.as_dict())
            done[pseudonym] = removed
    return done


def _remove_waiting_of(site, pseudonym: str, hashes: list[str], removed: Removed) -> bool:
    """The site's pending and held images of these hospital numbers, as a sheet named them for
    the patient (files, rows, receipts marked removed); whether there were any. A number the
    site links to another patient, and a held image naming another patient, are left alone."""
    from nccid.clinical.models import PatientLink
    from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt

    others = set(PatientLink.objects.filter(site=site, hospital_hash__in=hashes)
                 .exclude(pseudonym=pseudonym).values_list("hospital_hash", flat=True))
    hashes = [h for h in hashes if h not in others]
    held = HeldImage.objects.filter(site=site, hospital_hash__in=hashes,
                                    pseudonym__in=("", pseudonym))
    pending = PendingImage.objects.filter(site=site, hospital_hash__in=hashes)
    if not hashes or not (held.exists() or pending.exists()):
        return False
    _delete_waiting({"held": held, "pending": pending}, removed)
    _mark_removed(StudyReceipt.objects.filter(site=site, patient__in=hashes), REMOVED, removed)
    return True


def _count_on_withdrawal(pseudonym: str, removed: Removed) -> None:
    """Add ``removed`` to the counts of the patient's withdrawal (if still listed)."""
    with transaction.atomic():
        entry = Withdrawal.objects.select_for_update().filter(pseudonym=pseudonym).first()
        if entry is None:
            return
        counts = dict(entry.removed)
        for name, count in removed.as_dict().items():
            counts[name] = counts.get(name, 0) + count
        Withdrawal.objects.filter(pk=entry.pk).update(removed=counts)


def _purge_identity(pseudonym: str, removed: Removed) -> None:
    from nccid.identity.models import VaultEntry
    from nccid.warehouse.service import retire_set

    removed.sets += retire_set(pseudonym)  # the set itself is kept: a reinstated patient returns to it
    removed.vault_entries += VaultEntry.objects.filter(pseudonym=pseudonym).delete()[0]
    _forget_deleted_vault_pages()


def _forget_deleted_vault_pages() -> None:
    """On SQLite the vault overwrites deleted rows (secure_delete, see the settings); this also
    empties the write-ahead log, which still holds the page as it was. PostgreSQL keeps a dead
    row until its space is reused: ``nccid vault rekey`` then leaves it undecryptable."""
    from django.db import connections, router

    from nccid.identity.models import VaultEntry

    connection = connections[router.db_for_write(VaultEntry)]
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- studies --------------------------------------------------------------------------------
STUDY_REFUSAL = "not kept: this study has been removed from the database"
STUDY_REMOVED = "removed from the database by its data managers"


def study_uid_held(text: str) -> str:
    """The stored (de-identified) Study Instance UID named by ``text``: the UID as researchers
    and the catalogue know it, or the original one a site knows (turned into the same keyed
    UID). Raises WithdrawalError when no study of that UID is held."""
    from nccid.identity.service import get_keyring
    from nccid.imaging.models import StudyReceipt

    text = (text or "").strip()
    if not text or len(text) > 64 or not all(c.isdigit() or c == "." for c in text):
        raise WithdrawalError("enter a Study Instance UID (digits and dots)")
    for candidate in (text, get_keyring().uid(text)):
        if StudyReceipt.objects.filter(study_uid=candidate).exists() or _study_images(candidate).exists():
            return candidate
    raise StudyNotHeld("no study with this Study Instance UID is held (as stored or as sent)")


class StudyNotHeld(WithdrawalError):
    """A well-formed Study Instance UID no receipt or image names."""


def look_up_study(user, text: str) -> StudyHoldings:
    """What is held of the study ``text`` names (``study_uid_held``), for a data manager,
    audited (``study.look-up``) whether found or not: found by the UID a site sent, it shows
    the stored UID and the patient's pseudonym. The event names the stored (keyed) UID, never
    the one typed, and says whether it was found by the UID as sent (``as_sent``)."""
    refused = reidentifying_refused(user, "study.look-up", "look a study up")
    if refused:  # found by the UID a site sent, a study tells which patient it is of
        raise WithdrawalError(refused)
    try:
        study_uid = study_uid_held(text)
    except StudyNotHeld:
        audit(user, "study.look-up", found=False)
        raise
    held = study_holdings(study_uid)
    audit(user, "study.look-up", pseudonym=held.patients[0] if len(held.patients) == 1 else "",
          study_uid=study_uid, found=True, as_sent=study_uid != text.strip(),
          patients=list(held.patients))
    return held


def _study_images(study_uid: str):
    from nccid.warehouse.models import ImageRecord

    return ImageRecord.objects.filter(study_uid=study_uid)


def remove_study(user, study_uid: str, reason: str, *, refresh: bool = True) -> Removed:
    """Remove one study everywhere (an image found to show an identifier, a study sent in
    error) and refuse it from now on; the patient's other studies and records stay."""
    reason = _check_request(user, reason, "remove a study")
    return _remove_study(study_uid, user, reason, refresh=refresh)


def remove_study_as_system(study_uid: str, removed_at: datetime, reason: str) -> Removed:
    """A removal the warehouse marks and the database lacks, made again (``markers.reapply``):
    listed as of ``removed_at`` by ``system``; the caller refreshes the catalogue."""
    return _remove_study(study_uid, "system", reason, requested_at=removed_at, refresh=False,
                         action="study.remove.reapplied")


def _remove_study(study_uid: str, by, reason: str, *, requested_at: datetime | None = None,
                  refresh: bool = True, action: str | None = None) -> Removed:
    from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt
    from nccid.research.models import TeachingCase

    from .markers import write_study_marker

    entry, created = _list_entry(StudyWithdrawal, by, reason, requested_at, study_uid=study_uid)
    # before anything is deleted: a database restored from an older backup cannot forget it
    write_study_marker(study_uid, entry.requested_at)
    set_name = (_study_images(study_uid).values_list("set_name", flat=True).first()
                or entry.removed.get("set_name"))
    # recorded first: a run interrupted after the images went would otherwise lose it
    StudyWithdrawal.objects.filter(pk=entry.pk).update(removed={**entry.removed, "set_name": set_name})
    removed = Removed()
    _delete_waiting({"held": HeldImage.objects.filter(study_uid=study_uid),
                     "pending": PendingImage.objects.filter(study_uid=study_uid)}, removed)
    _delete_images(_study_images(study_uid), removed)
    removed.teaching_cases += TeachingCase.objects.filter(study_uid=study_uid).delete()[0]
    _mark_removed(StudyReceipt.objects.filter(study_uid=study_uid), STUDY_REMOVED, removed)
    if refresh:
        _refresh_catalogue_twice()
    StudyWithdrawal.objects.filter(pk=entry.pk).update(
        completed_at=timezone.now(), removed={**removed.as_dict(), "set_name": set_name})
    audit(by, action or ("study.remove" if created else "study.remove.again"), reason=reason,
          study_uid=study_uid, **removed.as_dict())
    log.info("removed study %s: %s", study_uid, removed.as_dict())
    return removed


def removed_studies_among(study_uids: Iterable[str]) -> set[str]:
    """Those of these (de-identified) Study Instance UIDs removed from the database (a query
    per 500), or marked removed in the warehouse (``markers``: a database restored from before
    the removal, until it is re-applied; one listing of ``withdrawn/studies/``, only for
    studies the list does not name)."""
    from .markers import marked_studies

    wanted = {uid for uid in study_uids if uid}
    found = _listed(StudyWithdrawal, "study_uid", wanted)
    if wanted - found:
        found |= (wanted - found) & _marked(marked_studies, "study removal")
    return found


# -- what researchers must delete from their copies ------------------------------------------
def parse_since(text: str | None) -> datetime | None:
    """``YYYY-MM-DD`` as the start of that day (local time), or None for no date."""
    from datetime import date, time

    if not text:
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise WithdrawalError("the date must be written YYYY-MM-DD") from None
    return timezone.make_aware(datetime.combine(day, time.min))


def withdrawn_for(user, since: datetime | None = None) -> dict[str, list[dict]]:
    """The patients withdrawn and studies removed (since ``since``) from the sets ``user`` may
    query: what a researcher must delete from copies made earlier. A patient reinstated since
    is still listed, with ``reinstated_at``: what their copies hold was withdrawn. Audited."""
    from nccid.research.cohort import scope_for

    sets = scope_for(user)  # raises ScopeError for anyone but a researcher with a set

    def rows(*models) -> list:
        found = []
        for model in models:
            query = model.objects.all() if since is None else model.objects.filter(requested_at__gte=since)
            found += [row for row in query if (row.removed or {}).get("set_name") in sets]
        return sorted(found, key=lambda row: row.requested_at)

    answer = {
        "patients": [{"pseudonym": row.pseudonym, "withdrawn_at": row.requested_at.isoformat(),
                      "reinstated_at": _reinstated_at(row)}
                     for row in rows(Withdrawal, ReinstatedWithdrawal)],
        "studies": [{"study_uid": row.study_uid, "withdrawn_at": row.requested_at.isoformat()}
                    for row in rows(StudyWithdrawal)],
    }
    audit(user, "research.withdrawn", since=since.isoformat() if since else None,
          patients=len(answer["patients"]), studies=len(answer["studies"]))
    return answer


def _reinstated_at(row) -> str | None:
    reinstated = getattr(row, "reinstated_at", None)
    return reinstated.isoformat() if reinstated else None


# -- keeping withdrawn patients out ---------------------------------------------------------
def sweep() -> list[str]:
    """Remove whatever of a withdrawn patient or a removed study reached the database or the
    warehouse after its withdrawal (an intake, or the clinical JSON written after a sheet's
    commit, that raced it, or a sheet's check saved just after it), and re-apply the
    withdrawals and study removals the warehouse marks but the database lacks
    (``markers.reapply``); what was
    swept (pseudonyms and study UIDs). Runs before every catalogue refresh."""
    from nccid.clinical.models import ClinicalRecord
    from nccid.clinical.services import staged_among
    from nccid.imaging.models import HeldImage, StudyReceipt
    from nccid.warehouse.models import ImageRecord, PatientSet

    from .markers import reapply

    # withdrawals and removals a database restored from an older backup lacks: made again first
    mended = reapply()
    reapplied = set(mended.reapplied) | set(mended.studies_reapplied)
    found: set[str] = set()
    withdrawn = list(Withdrawal.objects.values_list("pseudonym", flat=True))
    for start in range(0, len(withdrawn), _CHUNK):
        chunk = withdrawn[start:start + _CHUNK]
        for model in (ImageRecord, ClinicalRecord, HeldImage, PatientSet):
            found.update(model.objects.filter(pseudonym__in=chunk)
                         .values_list("pseudonym", flat=True).distinct())
    found |= _with_clinical_json(set(withdrawn))
    found |= staged_among(set(withdrawn))  # checks waiting for confirmation (purge clears them)
    remove_late_arrivals(found)
    studies: set[str] = set()
    removed_studies = list(StudyWithdrawal.objects.values_list("study_uid", flat=True))
    for start in range(0, len(removed_studies), _CHUNK):
        chunk = removed_studies[start:start + _CHUNK]
        for model in (ImageRecord, HeldImage):
            studies.update(model.objects.filter(study_uid__in=chunk)
                           .values_list("study_uid", flat=True).distinct())
    for study_uid in sorted(studies):
        removed = Removed()
        _delete_waiting({"held": HeldImage.objects.filter(study_uid=study_uid)}, removed)
        _delete_images(ImageRecord.objects.filter(study_uid=study_uid), removed)
        _mark_removed(StudyReceipt.objects.filter(study_uid=study_uid), STUDY_REMOVED, removed)
        _swept(study_uid, removed, study_uid=study_uid)
    return sorted(found | reapplied | studies)


def remove_late_arrivals(pseudonyms: Iterable[str]) -> None:
    """Everything held of these withdrawn patients that arrived after their withdrawal
    (``purge``), audited ``withdrawal.sweep``."""
    for pseudonym in sorted(set(pseudonyms)):
        _swept(pseudonym, purge(pseudonym), pseudonym=pseudonym)


def _with_clinical_json(withdrawn: set[str]) -> set[str]:
    """Those of ``withdrawn`` with something in a folder of clinical JSON
    (``{set}/data/{pseudonym}/``): one recursive listing of each set's ``data`` folder (on S3,
    a request per thousand objects; no request per patient). A folder is counted only for an
    object in it: an S3 listing can still name a folder a withdrawal emptied (SeaweedFS keeps
    it), which would be purged again at every refresh. Local temporaries count: a killed
    writer's may hold the patient's record."""
    from nccid.warehouse.layout import SETS
    from nccid.warehouse.service import get_warehouse

    if not withdrawn:
        return set()
    warehouse = get_warehouse()
    found = set()
    for set_name in SETS:
        folder = f"{warehouse.root}/{set_name}/data/"
        try:
            paths = warehouse.fs.find(folder.rstrip("/"))
        except FileNotFoundError:
            continue
        for path in paths:
            pseudonym, below, _name = path.rstrip("/").removeprefix(folder).partition("/")
            if below and pseudonym in withdrawn:  # an object in the folder, not the folder
                found.add(pseudonym)
    return found


def _swept(what: str, removed: Removed, **named) -> None:
    """Audit and log what a sweep removed; nothing when it removed nothing."""
    if not any(removed.as_dict().values()):
        return
    audit("system", "withdrawal.sweep", **named, **removed.as_dict())
    log.warning("removed data of %s that arrived after its withdrawal: %s", what, removed.as_dict())
