"""Imaging services the portal, API and CLI share: receipts, the review queue, retention."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Case, CharField, Count, F, QuerySet, Value, When
from django.utils import timezone

from nccid.accounts.models import audit
from nccid.config import get_settings

from . import deps
from .deid import DeidError
from .intake import (
    count_deleted,
    read_encrypted,
    refresh_receipt_status,
    remove_encrypted,
    write_encrypted,
)
from .linking import finalise, link_pending
from .models import HeldImage, HeldStatus, PendingImage, ReceiptStatus, StudyReceipt
from .pending import purge_expired

log = logging.getLogger("nccid.imaging.services")

__all__ = ["HeldDecisionError", "held_image", "held_images", "purge_expired", "reject_held",
           "release_held", "studies_for_site", "studies_seen", "study_status_counts"]


# What the site's receipt says of an image a data manager rejected (the reviewer's own words
# stay in the audit: they may describe what the text showed).
REJECTED_HELD_PROBLEM = "deleted after review: burned-in text that could identify the patient"
# What a data manager is told when a released image cannot be given its patient's pseudonym.
RELEASE_REFUSED = ("it cannot be released: its de-identification could not be finished "
                   "({reason}); it stays held, reject it")


class HeldDecisionError(PermissionError):
    """The user may not decide on held images, or the image was already decided."""


def studies_seen(*, as_the_site: bool) -> QuerySet[StudyReceipt]:
    """Every receipt, each with ``shown_status``: its true status for data managers; as its
    own site is told it (``as_the_site``), a study 'stored' because another site's clinical
    record names the patient is 'waiting for clinical record', the site's own: a site learns
    nothing of other sites' patients from its receipts, and is asked for its sheet."""
    shown = _as_the_site_sees_it() if as_the_site else F("status")
    return StudyReceipt.objects.annotate(shown_status=shown)


def _as_the_site_sees_it() -> Case:
    return Case(When(~deps.site_sent_clinical_record(), status=ReceiptStatus.STORED,
                     then=Value(ReceiptStatus.WAITING)),
                default=F("status"), output_field=CharField())


def studies_for_site(site, status: str = "", *, as_the_site: bool = False) -> QuerySet[StudyReceipt]:
    """The site's received studies, newest first, with ``shown_status`` (``studies_seen``):
    all, or those shown as ``status`` (stored / waiting / pending / held / rejected)."""
    studies = studies_seen(as_the_site=as_the_site).filter(site=site)
    if status:  # a data manager's filter on the stored column (indexed with the site)
        studies = studies.filter(**{"shown_status" if as_the_site else "status": status})
    return studies.order_by("-last_received")


def study_status_counts(site, *, as_the_site: bool = False) -> list[tuple[str, str, int]]:
    """(status, its label, how many of the site's studies are shown with it) for each status
    some have (``studies_seen``)."""
    counts = dict(studies_seen(as_the_site=as_the_site).filter(site=site)
                  .values_list("shown_status").annotate(n=Count("id")).order_by())
    return [(code, label, counts[code]) for code, label in ReceiptStatus.choices if code in counts]


def held_images(site=None) -> QuerySet[HeldImage]:
    """Images waiting for a data manager's decision, oldest first."""
    query = HeldImage.objects.filter(status=HeldStatus.HELD).select_related("site")
    return query.filter(site=site) if site is not None else query


def held_image(held: HeldImage, user):
    """The held image as it would enter the warehouse (de-identified header; its pixels may
    show burned-in text), for a data manager deciding on it. Every look is audited."""
    if not getattr(user, "may_reidentify", False):  # its pixels may show a name: not admins
        raise HeldDecisionError("only data managers may see held images")
    if held.status != HeldStatus.HELD or not held.file_name:
        raise HeldDecisionError("this image has already been decided")
    try:
        data = read_encrypted(held.file_name, held.site.code, held.sop_uid)
    except FileNotFoundError:  # decided by someone else meanwhile
        raise HeldDecisionError("this image has already been decided") from None
    audit(user, "imaging.held.view", pseudonym=held.pseudonym, site=held.site.code,
          sop_uid=held.sop_uid)
    return _parse(data)


def _claim(held: HeldImage, user, status: str) -> HeldImage:
    if not getattr(user, "may_reidentify", False):  # as seeing them: not administrators
        raise HeldDecisionError("only data managers may release or reject held images")
    with transaction.atomic():
        taken = HeldImage.objects.filter(pk=held.pk, status=HeldStatus.HELD).update(
            status=status, decided_by=user.username, decided_at=timezone.now())
    if not taken:
        raise HeldDecisionError("this image has already been decided")
    held.refresh_from_db()
    return held


def release_held(held: HeldImage, user) -> str:
    """A data manager found no burned-in identifier: store it (or let it wait for linking).

    The claim and the move are one transaction: if the move fails, the image is still held
    (in the review queue, its file kept) and the release can be tried again. An image
    de-identification cannot finish is refused to the data manager (HeldDecisionError)."""
    pending_name = f"{held.sop_uid}.pending"
    try:
        with transaction.atomic():
            held = _claim(held, user, HeldStatus.RELEASED)
            pseudonym, outcome = _move_released(held)
            HeldImage.objects.filter(pk=held.pk).update(file_name="")
            audit(user, "imaging.held.release", pseudonym=pseudonym or "", site=held.site.code,
                  sop_uid=held.sop_uid, outcome=outcome)
    except Exception as exc:
        if not PendingImage.objects.filter(file_name=pending_name).exists():
            remove_encrypted(pending_name)  # written for a move that was rolled back
        if isinstance(exc, DeidError):  # the file's fault: releasing again would fail again
            log.warning("held image %s cannot be released (%s)", held.pk, exc)
            raise HeldDecisionError(RELEASE_REFUSED.format(reason=exc)) from None
        raise
    remove_encrypted(held.file_name)  # only once the release is committed
    return _link_if_known(held) if outcome == "pending" else outcome


def _link_if_known(held: HeldImage) -> str:
    """A released image left pending: link it if its patient became known meanwhile. A sheet
    confirmed while the release was in its transaction linked before the pending row was
    committed, so its linker could not see it (PostgreSQL); checking again after the commit,
    as ``_keep_pending`` does, means one of the two sees the other."""
    try:
        pseudonym = deps.pseudonym_for_hospital_number(held.site, held.hospital_hash)
        if pseudonym:
            link_pending(held.site, held.hospital_hash, pseudonym)
    except Exception as exc:  # noqa: BLE001 - released all the same: the next linking pass
        log.error("could not link released image %s (%s)", held.pk, type(exc).__name__)
        return "pending"
    if deps.image_exists(held.sop_uid):
        return "stored"
    return "pending" if PendingImage.objects.filter(sop_uid=held.sop_uid).exists() else "refused"


def _move_released(held: HeldImage) -> tuple[str | None, str]:
    """Store a released image, or keep it pending its link: (pseudonym or None, outcome)."""
    data = read_encrypted(held.file_name, held.site.code, held.sop_uid)
    pseudonym = held.pseudonym or deps.pseudonym_for_hospital_number(held.site, held.hospital_hash)
    receipt = StudyReceipt.objects.filter(site=held.site, study_uid=held.study_uid)
    if pseudonym:
        if held.pseudonym:  # de-identified when held, perhaps by an older release
            data = deps.deidentifier().recheck_bytes(data)
            header = _parse_header(data)
            meta = deps.image_meta(header)
        else:
            data, meta, header = finalise(data, pseudonym)
        linked = deps.has_clinical_record(pseudonym)
        deps.store_image(held.site, pseudonym, data, meta, linked=linked, dataset=header,
                         hospital_hash=held.hospital_hash)
        # The receipt may predate the record, or name the patient by hospital number only
        # (which the record's arrival did not mark): it learns of the record here.
        receipt.update(held=F("held") - 1, stored=F("stored") + 1, patient=pseudonym,
                       **({"has_clinical": True} if linked else {}))
        outcome = "stored"
    else:
        name = f"{held.sop_uid}.pending"
        size = write_encrypted(name, data, held.site.code, held.sop_uid)
        PendingImage.objects.create(
            site=held.site, hospital_hash=held.hospital_hash, sop_uid=held.sop_uid,
            study_uid=held.study_uid, file_name=name, size=size, source=held.source,
            expires_at=timezone.now() + timedelta(days=get_settings().pending_retention_days))
        receipt.update(held=F("held") - 1, pending=F("pending") + 1)
        outcome = "pending"
    refresh_receipt_status(receipt)
    return pseudonym, outcome


def reject_held(held: HeldImage, user, reason: str = "") -> None:
    """A data manager found identifying burned-in text: the image is deleted."""
    held = _claim(held, user, HeldStatus.REJECTED)
    remove_encrypted(held.file_name)
    HeldImage.objects.filter(pk=held.pk).update(file_name="")
    count_deleted(held.site, held.study_uid, held.sop_uid, "held", REJECTED_HELD_PROBLEM)
    audit(user, "imaging.held.reject", pseudonym=held.pseudonym, reason=reason,
          site=held.site.code, sop_uid=held.sop_uid)


def _parse_header(data: bytes):
    return _parse(data, stop_before_pixels=True)


def _parse(data: bytes, stop_before_pixels: bool = False):
    from io import BytesIO

    from pydicom import dcmread

    return dcmread(BytesIO(data), stop_before_pixels=stop_before_pixels)


