"""Retention of pending images: past ``pending_retention_days`` they are deleted, unless their
clinical record is in (then they are linked: an image is never deleted for want of a record
it has)."""

from __future__ import annotations

import logging
import time
from collections import Counter

from django.db import transaction
from django.utils import timezone

from nccid.accounts.models import audit
from nccid.config import get_settings
from nccid.processes import this_process

from . import deps
from .intake import count_deleted, remove_encrypted
from .linking import LinkPass, _claimable, known_patients, link_known
from .models import PendingImage

log = logging.getLogger("nccid.imaging.pending")

# What the site's receipt says of its images deleted so (counted as refused): no sheet of the
# site came after the image, or sheets came and none named its Patient ID.
EXPIRED_PROBLEM = ("deleted: no clinical record arrived within {days} days; send the images "
                   "again once the spreadsheet is in")
UNMATCHED_PROBLEM = ("deleted after {days} days: its Patient ID matched none of the clinical "
                     "records your site sent since; check it holds the NHS number or the "
                     "sheet's hospital number, then send it again")
# A waiting file no row names, this old, is left by a process killed after the row went (or
# before it was made): no writer is still between the two.
LEFTOVER_SECONDS = 3600


def purge_expired(now=None, user: str = "system") -> int:
    """Link what can be linked, then delete pending images whose retention has run out;
    returns how many were deleted (``link_and_purge`` says what linking did too)."""
    return link_and_purge(now, user)[1]


def link_and_purge(now=None, user: str = "system") -> tuple[LinkPass, int]:
    """What linking did, and how many expired images were then deleted. Each deleted counts
    as refused in its study's receipt, saying why, so the site is not told its images wait.
    An expired image whose record is in but that could not be linked now (the object store is
    down) is kept for the next run."""
    done = link_known()
    return done, _delete_expired(now, user)


def _delete_expired(now, user: str) -> int:
    now = now or timezone.now()
    days = get_settings().pending_retention_days
    per_site: Counter[str] = Counter()
    free = _claimable(now)
    expired = list(PendingImage.objects.filter(free, expires_at__lt=now).select_related("site"))
    linkable = _linkable(expired)
    last_sheet = deps.last_sheet_confirmed_at({row.site_id for row in expired})
    for row in expired:
        if (row.site_id, row.hospital_hash) in linkable:
            continue
        if not PendingImage.objects.filter(free, pk=row.pk).update(claimed_at=now,
                                                                 claimed_by=this_process()):
            continue
        remove_encrypted(row.file_name)
        with transaction.atomic():
            row.delete()
            count_deleted(row.site, row.study_uid, row.sop_uid, "pending",
                          _why_deleted(row, last_sheet.get(row.site_id), days))
        per_site[row.site.code] += 1
    _report(per_site, days, user)
    kept = sum((row.site_id, row.hospital_hash) in linkable for row in expired)
    if kept:
        log.warning("kept %d expired pending image(s) whose clinical record is in but that "
                    "could not be linked now (see the errors above); the next run tries again",
                    kept)
    remove_leftover_files()
    return sum(per_site.values())


def _why_deleted(row: PendingImage, last_sheet, days: int) -> str:
    """For the site's receipt: a sheet of the site confirmed after the image came, without its
    patient, means the image's Patient ID is the fault, not a missing spreadsheet."""
    came_since = last_sheet is not None and last_sheet > row.received_at
    return (UNMATCHED_PROBLEM if came_since else EXPIRED_PROBLEM).format(days=days)


def _linkable(rows: list[PendingImage]) -> set[tuple[int, str]]:
    """(site id, hospital hash) of those rows whose patient a clinical record has linked."""
    by_site: dict = {}
    for row in rows:
        by_site.setdefault(row.site, set()).add(row.hospital_hash)
    return {(site.pk, h) for site, hashes in by_site.items() for h in known_patients(site, hashes)}


def _report(per_site: Counter[str], days: int, user: str) -> None:
    purged = sum(per_site.values())
    if purged:
        audit(user, "imaging.pending.purge", count=purged, sites=dict(sorted(per_site.items())),
              retention_days=days)
        log.info("purged %d pending image(s) past retention (%s)", purged,
                 ", ".join(f"{code}: {n}" for code, n in sorted(per_site.items())))


def remove_leftover_files() -> int:
    """Delete waiting files (``*.pending``) that no pending image names, an hour old or more:
    left by a linker killed after storing the image (its copy is in the warehouse, and no
    withdrawal could find this one). Returns how many."""
    folder = get_settings().pending_dir
    names = sorted(_old_files(folder, time.time() - LEFTOVER_SECONDS))
    removed = 0
    for first in range(0, len(names), 500):
        chunk = names[first:first + 500]
        named = set(PendingImage.objects.filter(file_name__in=chunk)
                    .values_list("file_name", flat=True))
        for name in chunk:
            if name not in named:
                (folder / name).unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d waiting file(s) no pending image names", removed)
    return removed


def _old_files(folder, cutoff: float) -> list[str]:
    """Names of the finished waiting files in ``folder`` last written before ``cutoff``
    (temporaries, dot-named, are not these)."""
    found = []
    for path in folder.glob("*.pending") if folder.is_dir() else ():
        try:
            if not path.name.startswith(".") and path.stat().st_mtime < cutoff:
                found.append(path.name)
        except FileNotFoundError:  # removed meanwhile
            continue
    return found
