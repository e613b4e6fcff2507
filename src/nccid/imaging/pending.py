"""Retention of pending images: past ``pending_retention_days`` they are deleted."""

from __future__ import annotations

import logging
from collections import Counter

from django.db import transaction
from django.utils import timezone

from nccid.accounts.models import audit
from nccid.config import get_settings

from .intake import count_deleted, remove_encrypted
from .linking import _claimable
from .models import PendingImage

log = logging.getLogger("nccid.imaging.pending")

# What the site's receipt says of its images deleted so (counted as refused).
EXPIRED_PROBLEM = ("deleted: no clinical record arrived within {days} days; send the images "
                   "again once the spreadsheet is in")


def purge_expired(now=None, user: str = "system") -> int:
    """Delete pending images whose retention has run out; returns how many. Each counts as
    refused in its study's receipt, saying why, so the site is not told its images wait."""
    now = now or timezone.now()
    days = get_settings().pending_retention_days
    problem = EXPIRED_PROBLEM.format(days=days)
    per_site: Counter[str] = Counter()
    for row in PendingImage.objects.filter(_claimable(now), expires_at__lt=now).select_related("site"):
        if not PendingImage.objects.filter(_claimable(now), pk=row.pk).update(claimed_at=now):
            continue
        remove_encrypted(row.file_name)
        with transaction.atomic():
            row.delete()
            count_deleted(row.site, row.study_uid, row.sop_uid, "pending", problem)
        per_site[row.site.code] += 1
    purged = sum(per_site.values())
    if purged:
        audit(user, "imaging.pending.purge", count=purged, sites=dict(sorted(per_site.items())),
              retention_days=days)
        log.info("purged %d pending image(s) past retention (%s)", purged,
                 ", ".join(f"{code}: {n}" for code, n in sorted(per_site.items())))
    return purged
