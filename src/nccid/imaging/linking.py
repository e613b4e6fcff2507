"""Linking waiting images to their patient when the clinical record arrives.

An image whose Patient ID is a hospital number with no patient link yet waits, de-identified
and encrypted, as a ``PendingImage`` (placeholder patient = the site-scoped hospital hash).
When the clinical part accepts records naming that hash, each such image is finalised with
the patient's pseudonym and stored: claimed with one conditional UPDATE so that two linkers
racing (two uploads at once) never both take it, and stored idempotently by SOP UID. An image
de-identification cannot finalise is refused then, once (its receipt says why), not left to
fail again at every upload until it expires.

Linking is a job that resumes, not a one-shot side effect of the upload: a linker killed midway
(or an object store that was down) leaves images waiting whose patient is known, and
``link_known`` (``nccid images link``, run first by ``nccid images purge-pending``) links them.
Each image's steps may be repeated: the store is idempotent, and the waiting row is deleted
and the receipt moved in one transaction, so an image is counted stored once.

A waiting file that cannot be read is an outage of ``pending_dir`` (unmounted, renamed, its
disk failing) and the image waits, unless the folder is the one the waiting images were
written to (it holds their marker, ``intake.check_pending_folder``) and only the file is gone:
then it was lost, and the image is refused.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from io import BytesIO

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from pydicom import dcmread

from nccid.accounts.models import audit
from nccid.config import get_settings
from nccid.processes import process_gone, this_process

from . import deps
from .deid import DeidError
from .intake import (
    PendingFolderError,
    _drop_waiting,
    check_pending_folder,
    count_deleted,
    outage_of,
    read_encrypted,
    refresh_receipt_status,
    remove_encrypted,
)
from .models import PendingImage, StudyReceipt

log = logging.getLogger("nccid.imaging.linking")

# A claim older than this belongs to a linker that died: the image may be taken again. A claim
# of a process of this host that no longer runs is taken at once (its claimer is named).
STALE_CLAIM = timedelta(minutes=10)
# What the site's receipt says of a pending image refused when its patient became known.
LINK_REFUSED = "refused when its clinical record arrived: {reason}"
# How long an upload links its patients' waiting images before leaving the rest to the next
# pass (the node's, within ten minutes, or ``nccid images link``): a portal request should end
# well before the reverse proxy's 120 s timeout (docs/portal.md); gunicorn's gthread workers do
# not end long requests, so past it the user sees an error while the link runs on unseen.
UPLOAD_LINK_SECONDS = 60.0
LOST = "its waiting file was lost"


@dataclass
class LinkPass:
    """What linking did: images linked, refused, and left waiting (``failed``) for the next
    pass, with ``why``: the setting to check for the first of those (one line), if known."""

    linked: int = 0
    refused: int = 0
    failed: int = 0
    why: str = ""
    deferred: int = 0  # not tried before the deadline: left to the next pass
    claimed_elsewhere: int = 0  # held by another linker still running, and waiting still

    def add(self, other: LinkPass) -> None:
        self.linked += other.linked
        self.refused += other.refused
        self.failed += other.failed
        self.why = self.why or other.why
        self.deferred += other.deferred
        self.claimed_elsewhere += other.claimed_elsewhere

    @property
    def unlinked(self) -> int:
        """Images of known patients this pass tried and left waiting (``deferred`` aside)."""
        return self.failed + self.claimed_elsewhere


class _Lost(Exception):
    """The waiting file is gone from the folder the waiting images were written to."""


_CHUNK = 500  # values per IN (...) query: well under every database's parameter limit


def _claimable(now) -> Q:
    """Images no running linker holds: never claimed (or given back), claimed ``STALE_CLAIM``
    ago, or claimed by a process of this host that no longer runs (killed while linking).
    Another host's claim cannot be checked, and is taken once stale. (A dead claimer's pid
    reused by a new linker that claims meanwhile may lose its claim: the store is idempotent
    and the settling counts an image once, so both linking it costs only the work.)"""
    recent = PendingImage.objects.filter(claimed_at__gte=now - STALE_CLAIM)
    claimers = set(recent.values_list("claimed_by", flat=True).distinct())
    dead = sorted(claimer for claimer in claimers if process_gone(claimer))
    free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - STALE_CLAIM)
    return free | Q(claimed_by__in=dead) if dead else free


def finalise(data: bytes, pseudonym: str) -> tuple[bytes, object, object]:
    """Give a placeholder de-identified file its patient's pseudonym: (bytes, meta, header)."""
    out = deps.deidentifier().assign_patient_bytes(data, pseudonym)
    header = dcmread(BytesIO(out), stop_before_pixels=True)
    return out, deps.image_meta(header), header


def link_pending(site, hospital_hash: str, pseudonym: str,
                 deadline: float | None = None) -> LinkPass:
    """Store every pending image of this site and hospital hash under ``pseudonym``; past
    ``deadline`` (``time.monotonic()``) the images not yet claimed are left for the next pass."""
    done = LinkPass()
    now, me = timezone.now(), this_process()
    free = _claimable(now)
    patients = PendingImage.objects.filter(site=site, hospital_hash=hospital_hash)
    found = dict(patients.filter(free).values_list("pk", "claimed_at"))
    refusals = withdrawal_refusals(
        pseudonym, set(patients.values_list("study_uid", flat=True))) if found else {}
    pks = list(found)
    for position, pk in enumerate(pks):
        if deadline is not None and time.monotonic() > deadline:
            done.deferred += len(pks) - position
            break
        claim = PendingImage.objects.filter(free, pk=pk).update(claimed_at=now, claimed_by=me)
        if not claim:
            continue  # another linker has it
        row = PendingImage.objects.filter(pk=pk).first()
        if row is None:
            continue
        refusal = refusals.get(None, refusals.get(row.study_uid))
        if refusal is not None:  # withdrawn, or its study removed, while it waited
            _refuse(site, row, pseudonym, refusal)
            done.refused += 1
        else:
            _link_one(site, row, pseudonym, done, claimed_before=found[pk] is not None)
    # Each claim of this call is settled or given back by now: one left is another linker's.
    done.claimed_elsewhere = patients.filter(claimed_at__isnull=False).count()
    if done.linked:
        log.info("linked %d pending image(s) at site %s", done.linked, site.code)
    return done


def withdrawal_refusals(pseudonym: str, study_uids: set[str]) -> dict[str | None, str]:
    """Why images of ``pseudonym`` (of these studies) may not be stored: {None: reason} if
    the patient was withdrawn, else {study UID: reason} for their studies since removed. A
    withdrawal finds the waiting images of patients it knows, not those whose patient became
    known after it (a sheet linking their hospital number): those are refused here, as
    intake refuses them (docs/withdrawal.md). The database's lists only, a query each at most
    (none while nothing was ever withdrawn): this runs for every patient linked, and the
    sweep before each catalogue refresh also reads the warehouse's markers."""
    if deps.listed_withdrawn({pseudonym}):
        return {None: deps.WITHDRAWN_REFUSAL}
    return dict.fromkeys(deps.listed_removed_studies(study_uids), deps.STUDY_REFUSAL)


def _link_one(site, row: PendingImage, pseudonym: str, done: LinkPass,
              claimed_before: bool = True) -> None:
    """Store one claimed image and settle it, counting what became of it in ``done``.
    ``claimed_before``: some linker had claimed the row before this one did."""
    # Stored already: by a linker killed before settling (settled now), or by the site's own
    # batch, which this copy could not see (taken back unless a linker had claimed it).
    stored_by = deps.image_site_id(row.sop_uid)
    if stored_by is None:
        try:
            data, meta, header = finalise(_read_waiting(site, row), pseudonym)
            stored = deps.store_image(site, pseudonym, data, meta, linked=True, dataset=header,
                                      hospital_hash=row.hospital_hash)
            # (not created: the site's batch storing it committed meanwhile, on PostgreSQL
            # after this insert had waited for it)
            stored_by = None if stored.created else stored.record.site_id
        except _Lost:  # nothing left to store: say so rather than wait for ever
            _refuse(site, row, pseudonym, LOST)
            done.refused += 1
            return
        except DeidError as exc:  # the file's fault: trying again would fail again
            _refuse(site, row, pseudonym, str(exc))
            done.refused += 1
            return
        except Exception as exc:  # noqa: BLE001 - an outage or a bug: pending for the next try
            _leave_waiting(row, exc, done)
            return
    if stored_by == site.pk and not claimed_before:
        _drop_copy(site, row, pseudonym)
        return
    if _settle(site, row, pseudonym):
        done.linked += 1
    remove_encrypted(row.file_name)  # after the commit: a crash before it leaves a leftover file


def _drop_copy(site, row: PendingImage, pseudonym: str) -> None:
    """A waiting copy of an instance the site's own batch stored directly, committed after
    this copy was kept waiting (on PostgreSQL the copy cannot see an uncommitted store): its
    count is taken back, not settled as stored a second time. No linker had claimed it, so
    none stored it and was killed before settling (that copy is settled as stored)."""
    with transaction.atomic():
        _drop_waiting(site, PendingImage.objects.filter(pk=row.pk), {row.sop_uid: pseudonym})
    remove_encrypted(row.file_name)  # after the commit: a crash before it leaves a leftover file


def _read_waiting(site, row: PendingImage) -> bytes:
    """The waiting image's bytes; ``_Lost`` if its file is gone from the waiting images'
    folder, ``PendingFolderError`` if the folder cannot be read or is not theirs (no marker:
    an unmounted mount point, a folder renamed away)."""
    try:
        return read_encrypted(row.file_name, site.code, row.sop_uid)
    except FileNotFoundError:
        check_pending_folder(get_settings().pending_dir)  # (raises when the folder is away)
        raise _Lost from None
    except OSError as exc:
        raise PendingFolderError(exc.errno, exc.strerror) from None


def _leave_waiting(row: PendingImage, exc: Exception, done: LinkPass) -> None:
    why = outage_of(exc)  # (names pending_dir for a PendingFolderError)
    log.error("could not link pending image %s (%s)", row.pk, why or type(exc).__name__)
    PendingImage.objects.filter(pk=row.pk).update(claimed_at=None, claimed_by="")
    done.failed += 1
    done.why = done.why or why


def _settle(site, row: PendingImage, pseudonym: str) -> bool:
    """The stored image stops waiting: its row goes and its receipt counts it stored, together
    and once (a second linker, or a withdrawal, that deleted the row first moves nothing)."""
    with transaction.atomic():
        if not PendingImage.objects.filter(pk=row.pk).delete()[0]:
            return False
        _move_receipt(site, row.study_uid, pseudonym)
    return True


def link_known(deadline: float | None = None) -> LinkPass:
    """Link every waiting image whose patient has become known (their sheet is in), at every
    site, and mark as having a record the receipts of patients who have one: the recovery of
    linkers killed midway or stopped by an outage. Past ``deadline`` (``time.monotonic()``)
    the images not yet taken are counted ``deferred``. Returns what it did."""
    from nccid.accounts.models import Site

    done = LinkPass()
    for site in Site.objects.filter(pk__in=PendingImage.objects.values("site_id")).order_by("pk"):
        for hospital_hash, pseudonym in sorted(known_patients(site, waiting_hashes(site)).items()):
            done.add(link_pending(site, hospital_hash, pseudonym, deadline))
    waiting = StudyReceipt.objects.filter(has_clinical=False).values_list("patient", flat=True)
    mark_clinical(deps.clinical_pseudonyms(set(waiting.distinct())))
    return done


def known_patients(site, hospital_hashes: set[str]) -> dict[str, str]:
    """hospital hash -> pseudonym, for those of these hashes a clinical record has linked."""
    found = {h: deps.pseudonym_for_hospital_number(site, h) for h in hospital_hashes}
    return {h: pseudonym for h, pseudonym in found.items() if pseudonym}


def waiting_hashes(site) -> set[str]:
    """The hospital hashes of the images waiting at this site."""
    return set(PendingImage.objects.filter(site=site).values_list("hospital_hash", flat=True)
               .distinct())


def _refuse(site, row: PendingImage, pseudonym: str, reason: str) -> None:
    """Delete a pending image that cannot be finalised; its receipt counts it refused, and the
    audit trail records it. The reason is a DeidError's (which names no value) or ``LOST``."""
    log.warning("pending image %s refused at linking (%s)", row.pk, reason)
    remove_encrypted(row.file_name)
    with transaction.atomic():
        row.delete()
        count_deleted(site, row.study_uid, row.sop_uid, "pending", LINK_REFUSED.format(reason=reason))
        audit("system", "imaging.pending.refuse", pseudonym=pseudonym, reason=reason,
              site=site.code)


def _move_receipt(site, study_uid: str, pseudonym: str) -> None:
    query = StudyReceipt.objects.filter(site=site, study_uid=study_uid)
    query.update(pending=F("pending") - 1, stored=F("stored") + 1, patient=pseudonym,
                 has_clinical=True)
    refresh_receipt_status(query)


def mark_clinical(pseudonyms: set[str]) -> None:
    """Studies stored by NHS number stop 'waiting for clinical record' once one arrives."""
    ordered = sorted(pseudonyms)
    for start in range(0, len(ordered), _CHUNK):
        query = StudyReceipt.objects.filter(patient__in=ordered[start:start + _CHUNK],
                                            has_clinical=False)
        pks = list(query.values_list("pk", flat=True))
        if pks:
            StudyReceipt.objects.filter(pk__in=pks).update(has_clinical=True)
            refresh_receipt_status(StudyReceipt.objects.filter(pk__in=pks))


def hashes_with_pending(site, hospital_hashes: set[str]) -> set[str]:
    """Which of these hospital hashes have images waiting at this site (a few queries, not one each)."""
    ordered = sorted(hospital_hashes)
    found: set[str] = set()
    for start in range(0, len(ordered), _CHUNK):
        found.update(PendingImage.objects.filter(
            site=site, hospital_hash__in=ordered[start:start + _CHUNK]
        ).values_list("hospital_hash", flat=True).distinct())
    return found


def on_records_accepted(sender, site, records, **kwargs) -> None:
    """Receiver of ``clinical.signals.records_accepted``: link whatever was waiting."""
    try:
        mark_clinical({r.pseudonym for r in records if r.pseudonym})
        pseudonym_of: dict[str, str] = {}
        for record in records:  # the first record naming a hospital number, failing a link
            if record.hospital_hash:
                pseudonym_of.setdefault(record.hospital_hash, record.pseudonym)
        waiting = hashes_with_pending(site, set(pseudonym_of))
        # The site's link decides, as at intake (``identify``), not the row: a corrected sheet
        # naming another patient for a linked number keeps the link (and warns), so the
        # number's waiting images go where its later ones will.
        pseudonym_of.update(known_patients(site, waiting))
        deadline = time.monotonic() + UPLOAD_LINK_SECONDS
        done = LinkPass()
        for hospital_hash in sorted(waiting):
            done.add(link_pending(site, hospital_hash, pseudonym_of[hospital_hash], deadline))
        if done.deferred:
            log.info("%d waiting image(s) of site %s left to the next linking pass (the node's "
                     "within ten minutes, or 'nccid images link')", done.deferred, site.code)
    except Exception as exc:  # noqa: BLE001 - never fail the clinical upload; pending stays
        log.error("linking after a clinical upload failed (%s)", type(exc).__name__)
