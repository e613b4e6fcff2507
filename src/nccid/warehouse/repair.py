"""Repair after ``nccid warehouse verify`` found images whose object is missing from the store.

Such an image cannot come back by itself: its row says it is stored, so the same file sent
again (a re-import, a node resend) is answered "duplicate". ``forget_missing`` forgets it: the
row and its header JSON go (the catalogue drops it at the next refresh), and its study's
receipt counts it refused with ``LOST_PROBLEM``, which asks the site to send the study again.
Sent again, the file is de-identified and stored as new, and the refusal is taken back.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction

from .models import ImageRecord
from .service import get_warehouse

log = logging.getLogger("nccid.warehouse")

# What the site's receipt says of an image forgotten so.
LOST_PROBLEM = ("lost from the warehouse (found missing by a check): send this study again; "
                "images still stored are skipped")
_CHUNK = 500


@dataclass
class Forgotten:
    images: int = 0
    by_site: Counter = field(default_factory=Counter)  # site code -> images
    not_recorded: int = 0  # keys no row names (a stale catalogue: its next refresh drops them)
    present_again: int = 0  # keys whose object is there when checked again: left alone


def forget_missing(keys: Iterable[str], user) -> Forgotten:
    """Forget the images whose data object (``storage_key``) is missing, each checked again
    now, so that the same file sent again is stored anew; their receipts ask for them.
    Audited (``warehouse.forget_missing``, counts only), also when the store fails midway."""
    from nccid.accounts.models import audit

    forgotten = Forgotten()
    try:
        _forget_each(sorted(set(keys)), forgotten)
    finally:
        audit(user, "warehouse.forget_missing", images=forgotten.images,
              sites=dict(sorted(forgotten.by_site.items())),
              not_recorded=forgotten.not_recorded, present_again=forgotten.present_again)
    return forgotten


def _forget_each(wanted: list[str], forgotten: Forgotten) -> None:
    warehouse = get_warehouse()
    for first in range(0, len(wanted), _CHUNK):
        chunk = wanted[first:first + _CHUNK]
        rows = list(ImageRecord.objects.filter(storage_key__in=chunk).select_related("site"))
        forgotten.not_recorded += len(chunk) - len(rows)
        lost = [row for row in rows if not warehouse.exists(row.storage_key)]
        forgotten.present_again += len(rows) - len(lost)
        _forget(lost)
        _remove_headers(warehouse, [row.metadata_key for row in lost])
        forgotten.images += len(lost)
        forgotten.by_site.update(row.site.code for row in lost)


def _forget(rows: list[ImageRecord]) -> None:
    """The rows go, their receipts count them refused, and the other rows of their catalogue
    parts are catalogued again (the parts are rewritten without them), in one transaction."""
    from nccid.imaging.intake import count_deleted

    if not rows:
        return
    ids = [row.pk for row in rows]
    parts = {row.catalogue_part for row in rows if row.catalogue_part is not None}
    with transaction.atomic():
        (ImageRecord.objects.filter(catalogue_part__in=parts).exclude(pk__in=ids)
         .update(catalogue_part=None))
        ImageRecord.objects.filter(pk__in=ids).delete()
        for row in rows:
            count_deleted(row.site, row.study_uid, row.sop_uid, "stored", LOST_PROBLEM)


def _remove_headers(warehouse, keys: list[str]) -> None:
    """The forgotten images' header JSON (no row names it now; sent again, it is rewritten)."""
    try:
        warehouse.delete_many(keys)
    except Exception as exc:  # noqa: BLE001 - the forgetting stands; a resend overwrites them
        log.error("could not remove the header JSON of %d forgotten image(s) (%s)", len(keys),
                  type(exc).__name__)
