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
"""

from __future__ import annotations

import logging
from datetime import timedelta
from io import BytesIO

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from pydicom import dcmread

from . import deps
from .deid import DeidError
from .intake import count_deleted, read_encrypted, refresh_receipt_status, remove_encrypted
from .models import PendingImage, StudyReceipt

log = logging.getLogger("nccid.imaging.linking")

# A claim older than this belongs to a linker that died: the image may be taken again.
STALE_CLAIM = timedelta(minutes=10)
# What the site's receipt says of a pending image refused when its patient became known.
LINK_REFUSED = "refused when its clinical record arrived: {reason}"


_CHUNK = 500  # values per IN (...) query: well under every database's parameter limit


def _claimable(now) -> Q:
    return Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - STALE_CLAIM)


def finalise(data: bytes, pseudonym: str) -> tuple[bytes, object, object]:
    """Give a placeholder de-identified file its patient's pseudonym: (bytes, meta, header)."""
    out = deps.deidentifier().assign_patient_bytes(data, pseudonym)
    header = dcmread(BytesIO(out), stop_before_pixels=True)
    return out, deps.image_meta(header), header


def link_pending(site, hospital_hash: str, pseudonym: str) -> int:
    """Store every pending image of this site and hospital hash under ``pseudonym``."""
    linked = 0
    now = timezone.now()
    rows = PendingImage.objects.filter(_claimable(now), site=site, hospital_hash=hospital_hash)
    for pk in list(rows.values_list("pk", flat=True)):
        claim = PendingImage.objects.filter(_claimable(now), pk=pk).update(claimed_at=now)
        if not claim:
            continue  # another linker has it
        row = PendingImage.objects.filter(pk=pk).first()
        if row is not None and _link_one(site, row, pseudonym):
            linked += 1
    if linked:
        log.info("linked %d pending image(s) at site %s", linked, site.code)
    return linked


def _link_one(site, row: PendingImage, pseudonym: str) -> bool:
    """Store one claimed image and settle it; True if this call settled it."""
    if not deps.image_exists(row.sop_uid):  # (stored already by a linker killed before settling)
        try:
            data, meta, header = finalise(
                read_encrypted(row.file_name, site.code, row.sop_uid), pseudonym)
            deps.store_image(site, pseudonym, data, meta, linked=True, dataset=header)
        except FileNotFoundError:  # nothing left to store: say so rather than wait for ever
            _refuse(site, row, "its waiting file was lost")
            return False
        except DeidError as exc:  # the file's fault: trying again would fail again
            _refuse(site, row, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - leave it pending for the next try
            log.error("could not link pending image %s (%s)", row.pk, type(exc).__name__)
            PendingImage.objects.filter(pk=row.pk).update(claimed_at=None)
            return False
    settled = _settle(site, row, pseudonym)
    remove_encrypted(row.file_name)  # after the commit: a crash before it leaves a leftover file
    return settled


def _settle(site, row: PendingImage, pseudonym: str) -> bool:
    """The stored image stops waiting: its row goes and its receipt counts it stored, together
    and once (a second linker, or a withdrawal, that deleted the row first moves nothing)."""
    with transaction.atomic():
        if not PendingImage.objects.filter(pk=row.pk).delete()[0]:
            return False
        _move_receipt(site, row.study_uid, pseudonym)
    return True


def link_known() -> int:
    """Link every waiting image whose patient has become known (their sheet is in), at every
    site, and mark as having a record the receipts of patients who have one: the recovery of
    linkers killed midway or stopped by an outage. Returns how many images were linked."""
    from nccid.accounts.models import Site

    linked = 0
    for site in Site.objects.filter(pk__in=PendingImage.objects.values("site_id")).order_by("pk"):
        for hospital_hash, pseudonym in sorted(known_patients(site, waiting_hashes(site)).items()):
            linked += link_pending(site, hospital_hash, pseudonym)
    waiting = StudyReceipt.objects.filter(has_clinical=False).values_list("patient", flat=True)
    mark_clinical(deps.clinical_pseudonyms(set(waiting.distinct())))
    return linked


def known_patients(site, hospital_hashes: set[str]) -> dict[str, str]:
    """hospital hash -> pseudonym, for those of these hashes a clinical record has linked."""
    found = {h: deps.pseudonym_for_hospital_number(site, h) for h in hospital_hashes}
    return {h: pseudonym for h, pseudonym in found.items() if pseudonym}


def waiting_hashes(site) -> set[str]:
    """The hospital hashes of the images waiting at this site."""
    return set(PendingImage.objects.filter(site=site).values_list("hospital_hash", flat=True)
               .distinct())


def _refuse(site, row: PendingImage, reason: str) -> None:
    """Delete a pending image that cannot be finalised; its receipt counts it refused. The
    reason is a DeidError's, which names no value."""
    log.warning("pending image %s refused at linking (%s)", row.pk, reason)
    remove_encrypted(row.file_name)
    with transaction.atomic():
        row.delete()
        count_deleted(site, row.study_uid, row.sop_uid, "pending", LINK_REFUSED.format(reason=reason))


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
        for record in records:  # the first record naming a hospital number decides
            if record.hospital_hash:
                pseudonym_of.setdefault(record.hospital_hash, record.pseudonym)
        for hospital_hash in sorted(hashes_with_pending(site, set(pseudonym_of))):
            link_pending(site, hospital_hash, pseudonym_of[hospital_hash])
    except Exception as exc:  # noqa: BLE001 - never fail the clinical upload; pending stays
        log.error("linking after a clinical upload failed (%s)", type(exc).__name__)
