"""Retention of pending images: past ``pending_retention_days`` they are deleted."""

from __future__ import annotations

import logging

from django.utils import timezone

from nccid.accounts.models import audit

from .intake import refresh_receipt_status, remove_encrypted
from .linking import _claimable
from .models import PendingImage, StudyReceipt

log = logging.getLogger("nccid.imaging.pending")


def purge_expired(now=None, user: str = "system") -> int:
    """Delete pending images whose retention has run out; returns how many."""
    now = now or timezone.now()
    purged = 0
    from django.db.models import F

    for row in PendingImage.objects.filter(_claimable(now), expires_at__lt=now):
        if not PendingImage.objects.filter(_claimable(now), pk=row.pk).update(claimed_at=now):
            continue
        remove_encrypted(row.file_name)
        row.delete()
        receipt = StudyReceipt.objects.filter(site=row.site_id, study_uid=row.study_uid)
        receipt.update(pending=F("pending") - 1)
        refresh_receipt_status(receipt)
        purged += 1
    if purged:
        audit(user, "imaging.pending.purge", count=purged)
        log.info("purged %d pending image(s) past retention", purged)
    return purged
