"""Moving a site's hospital number to the right patient (``nccid patient relink``).

A sheet that gives a hospital number a wrong but valid NHS/CHI number (a typo, the next row's
number pasted) links the number to the wrong pseudonym. The site's corrected sheet cannot
move the link (``clinical.services._link`` keeps the earlier one and warns), so the images
that arrive by that number keep going to the wrong patient, who may even sit in the other
set than the right one. Withdrawing the wrong patient is no repair: the withdrawal keeps the
link, so every later image of the real patient by that number is refused.

``relink`` moves the link and everything the site sent through it. Which images those are:
each stored image records the keyed hash of the hospital number that linked it
(``ImageRecord.hospital_hash``; "" when an NHS/CHI number named it), so the images moved are
the site's images under the old pseudonym named by this number. Images the site sent by an
NHS/CHI number stay: they are that number's patient's. Images stored before that was recorded
(NULL, "unrecorded") may have come by either, so they stay unless the data manager asks for
them (``include_unrecorded``), and then a relink is refused when the old pseudonym has another
hospital number at the site (they could not be told from that number's either).

A number already linked to the right patient may still have images misfiled before the sheet:
a hospital number that passes the NHS/CHI check, sent before the sheet linked it, was read as
that number (``intake.identify``), so its images sit under the pseudonym of the hospital
number read as an NHS/CHI number. When no clinical record or link of any site names that
pseudonym (it is nobody's), a relink moves the site's images under it that no hospital number
named, then forgets it: its vault entry (the hospital number kept as an NHS number) and its
set, once nothing else names it. Either way the moved images record this number's hash.

Each image is rewritten as if it had arrived for the right patient:
PatientID and PatientName the new pseudonym, under a date-shifting profile every date moved
by the difference of the two patients' offsets and the birth year the new patient's; its
header JSON; its keys (the new pseudonym's folder in the new patient's set: a patient is
never in both sets); its row.

Order, so a run killed anywhere is finished by running the command again: the relink entry,
the plan of images (with their old keys) and the link move commit together first, so intake
sends the number's next images to the right patient at once; then per image, the new objects
are written, the row moved in a transaction (only if it still names the old patient), and the
old objects deleted; then receipts and teaching cases follow the studies, the catalogue parts
of moved rows are written again at the next refresh, and the entry is marked complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from pydicom import dcmread

from nccid.accounts.models import audit, reidentifying_refused

from .models import Relink, RelinkedImage
from .services import WithdrawalError, _handed_out, check_reason, withdrawn_among

log = logging.getLogger("nccid.withdrawal")
_CHUNK = 500


class RelinkError(WithdrawalError):
    """A relink that cannot be made as asked; the message says why (never a number)."""


@dataclass(frozen=True)
class RelinkPlan:
    """What a relink would do, shown before it is confirmed."""

    site_code: str
    old_pseudonym: str
    new_pseudonym: str
    images: int
    studies: int
    new_set: str | None  # the new patient's set, None if not yet decided (the site's rule decides)
    resuming: bool  # an interrupted relink of the same number to the same patient
    misfiled: bool = False  # images filed under the number read as an NHS/CHI number
    left: int = 0  # the site's other images under the old pseudonym (sent by NHS/CHI number)
    unrecorded: int = 0  # of ``images``, those stored before the linking number was recorded
    unrecorded_left: int = 0  # the site's such images under the old pseudonym that stay
    include_unrecorded: bool = False  # asked to move them (a misfiled relink always does)


@dataclass
class Relinked:
    """What a relink did (counts), and what it left for the data manager."""

    old_pseudonym: str
    new_pseudonym: str
    images: int = 0
    gone: int = 0  # planned images not moved (withdrawn or removed meanwhile)
    receipts: int = 0
    teaching_cases: int = 0
    set_name: str | None = None
    clinical_left: tuple[str, ...] = ()  # kinds of the site's records under the old pseudonym
    handed_out: int = 0  # research hand-outs since the first moved image arrived
    forgotten: bool = False  # the misfiled pseudonym's vault entry and set removed
    unrecorded: int = 0  # moved images stored before the linking number was recorded
    unrecorded_left: int = 0  # such images of the site left under the old pseudonym


# -- checks ----------------------------------------------------------------------------------
def _site(code: str):
    from nccid.accounts.models import Site

    site = Site.objects.filter(code=(code or "").strip().upper()).first()
    if site is None:
        raise RelinkError(f"no site has the code {(code or '').strip().upper()!r}")
    return site


def _new_pseudonym(number: str) -> str:
    """The pseudonym of a typed NHS/CHI number, validated as intake and sheets validate it."""
    from nccid.config import get_settings
    from nccid.identity.numbers import InvalidPatientNumber, is_test_number, validate_patient_number
    from nccid.identity.service import get_keyring

    try:
        digits = validate_patient_number((number or "").strip())
    except InvalidPatientNumber:
        raise RelinkError("the NHS/CHI number is not valid (10 digits with a valid check "
                          "digit)") from None
    if is_test_number(digits) and not get_settings().accept_test_numbers:
        raise RelinkError("the NHS/CHI number is an NHS test number (999 range): this "
                          "installation refuses test data (setting accept_test_numbers)")
    return get_keyring().pseudonym(digits)


def _hospital_hash(site, hospital_number: str) -> str:
    from nccid.identity.service import get_keyring

    try:
        return get_keyring().hospital_hash(site.code, hospital_number or "")
    except ValueError:
        raise RelinkError("the hospital number is empty") from None


def _unfinished(site, hospital_hash: str) -> Relink | None:
    return Relink.objects.filter(site=site, hospital_hash=hospital_hash,
                                 completed_at=None).first()


def plan(user, site_code: str, hospital_number: str, number: str, reason: str, *,
         include_unrecorded: bool = False) -> RelinkPlan:
    """Check a relink and say what it would move; RelinkError if it cannot be made. The
    look-up is audited (``patient.relink.look-up``) whatever its answer, as a patient look-up is.
    ``include_unrecorded``: move the images stored before the linking number was recorded too."""
    refused = reidentifying_refused(user, "patient.relink", "relink a hospital number")
    if refused:  # it turns two numbers typed into pseudonyms: not for administrators
        raise RelinkError(refused)
    check_reason(reason, "in the audit log")
    site = _site(site_code)
    new = _new_pseudonym(number)
    hospital_hash = _hospital_hash(site, hospital_number)
    try:
        found = _plan(site, hospital_hash, hospital_number, new, include_unrecorded)
    except RelinkError as exc:
        audit(user, "patient.relink.look-up", site=site.code, refused=str(exc))
        raise
    audit(user, "patient.relink.look-up", pseudonym=new, site=site.code,
          old=found.old_pseudonym, images=found.images, misfiled=found.misfiled,
          unrecorded=found.unrecorded, unrecorded_left=found.unrecorded_left)
    return found


def _plan(site, hospital_hash: str, hospital_number: str, new: str,
          include_unrecorded: bool) -> RelinkPlan:
    from nccid.clinical.models import PatientLink
    from nccid.warehouse.models import PatientSet

    from .services import is_named

    unfinished = _unfinished(site, hospital_hash)
    if unfinished is not None:
        if unfinished.new_pseudonym != new:
            raise RelinkError("a relink of this hospital number to another NHS/CHI number was "
                              "interrupted: run that one again to finish it first")
        old = unfinished.old_pseudonym
        misfiled = old == _read_as_number(hospital_number)
        counts = _resumed_counts(unfinished, include_unrecorded)
    else:
        link = PatientLink.objects.filter(site=site, hospital_hash=hospital_hash).first()
        if link is None:
            raise RelinkError(f"this hospital number is linked to no patient at site {site.code} "
                              "(no accepted sheet row of the site gives it): nothing to move")
        misfiled = link.pseudonym == new
        if misfiled:
            old = _misfiled_under(site, hospital_number, new)
        else:
            old = link.pseudonym
            if not is_named(new):
                raise RelinkError("nothing in the database names the patient of that NHS/CHI "
                                  "number: check the number, and have the site upload its "
                                  "corrected sheet first")
            _refuse_ambiguous(site, hospital_hash, old, include_unrecorded)
        counts = _fresh_counts(site, old, hospital_hash, misfiled, include_unrecorded or misfiled)
    if withdrawn_among([new]):
        raise RelinkError("the patient of that NHS/CHI number has been withdrawn from the "
                          "database: reinstate them first if the site may send them")
    new_set = PatientSet.objects.filter(pseudonym=new).values_list("set_name", flat=True).first()
    return RelinkPlan(site.code, old, new, new_set=new_set, resuming=unfinished is not None,
                      misfiled=misfiled, **counts)


def _fresh_counts(site, old: str, hospital_hash: str, misfiled: bool, include: bool) -> dict:
    """What a new relink moves and leaves of the site's images under ``old``."""
    from nccid.warehouse.models import ImageRecord

    images = images_named(site, old, hospital_hash, misfiled, include)
    count = images.count()
    unrecorded = _unrecorded(ImageRecord.objects.filter(site=site, pseudonym=old))
    return {"images": count, "studies": images.values("study_uid").distinct().count(),
            "left": ImageRecord.objects.filter(site=site, pseudonym=old).count() - count
            - (0 if include else unrecorded),
            "unrecorded": unrecorded if include else 0,
            "unrecorded_left": 0 if include else unrecorded, "include_unrecorded": include}


def _resumed_counts(entry: Relink, include_unrecorded: bool) -> dict:
    """What an interrupted relink still has to move: its plan, made when it started, whatever
    is asked now; the site's unrecorded images it did not plan stay."""
    from nccid.warehouse.models import ImageRecord

    pending = RelinkedImage.objects.filter(relink=entry, done=False)
    planned = ImageRecord.objects.filter(sop_uid__in=pending.values("sop_uid"))
    unrecorded = _unrecorded(planned.filter(pseudonym=entry.old_pseudonym))
    unrecorded_left = _unrecorded(ImageRecord.objects.filter(
        site_id=entry.site_id, pseudonym=entry.old_pseudonym).exclude(
        sop_uid__in=pending.values("sop_uid")))
    if include_unrecorded and unrecorded_left:
        raise RelinkError("the interrupted relink of this hospital number did not include the "
                          "images stored before images recorded the number that linked them, "
                          "and finishing it cannot add them: run it again without "
                          "--include-unrecorded to finish it")
    return {"images": pending.count(), "studies": planned.values("study_uid").distinct().count(),
            "unrecorded": unrecorded, "unrecorded_left": unrecorded_left,
            "include_unrecorded": bool(unrecorded)}


def _unrecorded(images) -> int:
    """How many of ``images`` were stored before images recorded their linking number."""
    return images.filter(hospital_hash__isnull=True).count()


def images_named(site, old: str, hospital_hash: str, misfiled: bool, include_unrecorded: bool):
    """The site's images under ``old`` that a relink of this number moves: those the number
    linked, or (``misfiled``) those no hospital number linked; and, if ``include_unrecorded``,
    those stored before the linking number was recorded (NULL), which may have come by either."""
    from nccid.warehouse.models import ImageRecord

    named = ImageRecord.objects.filter(site=site, pseudonym=old)
    recorded = "" if misfiled else hospital_hash
    if include_unrecorded:
        return named.filter(Q(hospital_hash=recorded) | Q(hospital_hash__isnull=True))
    return named.filter(hospital_hash=recorded)


def _read_as_number(hospital_number: str) -> str | None:
    """The pseudonym of the hospital number read as an NHS/CHI number, None if it fails the check."""
    from nccid.identity.numbers import InvalidPatientNumber, validate_patient_number
    from nccid.identity.service import get_keyring

    try:
        return get_keyring().pseudonym(validate_patient_number((hospital_number or "").strip()))
    except InvalidPatientNumber:
        return None


def _misfiled_under(site, hospital_number: str, new: str) -> str:
    """For a number already linked to ``new``: the pseudonym its images were filed under when
    read as an NHS/CHI number before the sheet linked it, when the site has such images and
    that pseudonym is nobody's (no clinical record or link of any site names it)."""
    from nccid.imaging.models import HeldImage, HeldStatus

    phantom = _read_as_number(hospital_number)
    if phantom is None or phantom == new or not images_named(site, phantom, "", True, True).exists():
        raise RelinkError(f"this hospital number is already linked to that NHS/CHI number at "
                          f"site {site.code}: nothing to move")
    if _names_a_patient(phantom):
        raise RelinkError(f"the images site {site.code} sent before its sheet, filed under the "
                          "hospital number read as an NHS/CHI number, are under a patient a "
                          "clinical sheet names: they cannot be told from that patient's. "
                          "Remove the wrong studies ('nccid study remove') and have the site "
                          "send them again")
    if HeldImage.objects.filter(site=site, pseudonym=phantom, hospital_hash="",
                                status=HeldStatus.HELD).exists():
        raise RelinkError(f"images of site {site.code} filed under the hospital number read as "
                          "an NHS/CHI number are held for review: release or reject them first "
                          "('nccid images held')")
    return phantom


def _names_a_patient(pseudonym: str) -> bool:
    """A clinical record or a hospital-number link of any site names ``pseudonym``."""
    from nccid.clinical.models import ClinicalRecord, PatientLink

    return (ClinicalRecord.objects.filter(pseudonym=pseudonym).exists()
            or PatientLink.objects.filter(pseudonym=pseudonym).exists())


def _refuse_ambiguous(site, hospital_hash: str, old: str, include_unrecorded: bool) -> None:
    """Refuse what a relink cannot do right: this number's images held for review under the
    old patient (their files carry the old pseudonym), and, when asked to move the images
    stored before the linking number was recorded, such images when the old patient has a
    second hospital number at the site (they could not be told from that number's either)."""
    from nccid.clinical.models import PatientLink
    from nccid.imaging.models import HeldImage, HeldStatus
    from nccid.warehouse.models import ImageRecord

    others = PatientLink.objects.filter(site=site, pseudonym=old).exclude(hospital_hash=hospital_hash)
    unknown = ImageRecord.objects.filter(site=site, pseudonym=old, hospital_hash__isnull=True)
    if include_unrecorded and others.exists() and unknown.exists():
        raise RelinkError(f"the patient this number is linked to has {others.count()} other "
                          f"hospital number(s) at site {site.code}, and {unknown.count()} of "
                          "the site's images under that patient were stored before images "
                          "recorded the hospital number that named them: they cannot be told "
                          "apart. Remove those studies ('nccid study remove') and have the "
                          "site send them again after relinking")
    if HeldImage.objects.filter(site=site, pseudonym=old, hospital_hash=hospital_hash,
                                status=HeldStatus.HELD).exists():
        raise RelinkError(f"images of site {site.code} under the patient this number is linked "
                          "to are held for review: release or reject them first "
                          "('nccid images held')")


# -- moving ------------------------------------------------------------------------------------
def relink(user, site_code: str, hospital_number: str, number: str, reason: str, *,
           include_unrecorded: bool = False, refresh: bool = True) -> Relinked:
    """Move the site's hospital number, and the images it linked to the patient it was linked
    to, to the patient of ``number``; with ``include_unrecorded`` the site's images there
    stored before the linking number was recorded too. Running it again finishes an
    interrupted one."""
    from nccid.clinical.models import PatientLink

    found = plan(user, site_code, hospital_number, number, reason,
                 include_unrecorded=include_unrecorded)
    reason = check_reason(reason, "in the audit log")
    site = _site(site_code)
    hospital_hash = _hospital_hash(site, hospital_number)
    with transaction.atomic():
        entry = _unfinished(site, hospital_hash)
        if entry is None:
            entry = Relink.objects.create(
                site=site, hospital_hash=hospital_hash, old_pseudonym=found.old_pseudonym,
                new_pseudonym=found.new_pseudonym, requested_by=user.username, reason=reason)
            _plan_images(entry, found.misfiled, found.include_unrecorded)
        moved = (PatientLink.objects.filter(site=site, hospital_hash=hospital_hash)
                 .update(pseudonym=entry.new_pseudonym))
    audit(user, "patient.relink.start" if not found.resuming else "patient.relink.again",
          pseudonym=entry.new_pseudonym, reason=reason, site=site.code,
          old=entry.old_pseudonym, images=found.images, link_moved=bool(moved),
          include_unrecorded=include_unrecorded,  # as asked (a misfiled relink moves them anyway)
          unrecorded=found.unrecorded)
    done = _move(entry)
    if found.misfiled:
        done.forgotten = _forget_misfiled(entry.old_pseudonym)
    entry.moved = {"images": done.images, "gone": done.gone, "receipts": done.receipts,
                   "teaching_cases": done.teaching_cases, "set_name": done.set_name,
                   "misfiled": found.misfiled, "forgotten": done.forgotten,
                   "unrecorded": done.unrecorded, "unrecorded_left": done.unrecorded_left}
    entry.completed_at = timezone.now()
    entry.save(update_fields=["moved", "completed_at"])
    audit(user, "patient.relink", pseudonym=entry.new_pseudonym, reason=reason, site=site.code,
          old=entry.old_pseudonym, **entry.moved)
    log.info("relinked a hospital number of site %s: %s -> %s, %s", site.code,
             entry.old_pseudonym, entry.new_pseudonym, entry.moved)
    if refresh:
        refresh_catalogue()
    return done


def refresh_catalogue() -> None:
    """The catalogue written again with the moved rows (their parts were marked for it)."""
    from nccid.warehouse.catalogue import refresh_catalogue as refresh

    refresh()


def _plan_images(entry: Relink, misfiled: bool, include_unrecorded: bool) -> None:
    rows = (images_named(entry.site, entry.old_pseudonym, entry.hospital_hash, misfiled,
                         include_unrecorded)
            .values_list("sop_uid", "storage_key", "metadata_key"))
    RelinkedImage.objects.bulk_create(
        [RelinkedImage(relink=entry, sop_uid=sop, old_storage_key=data, old_metadata_key=header)
         for sop, data, header in rows], batch_size=_CHUNK)


def _move(entry: Relink) -> Relinked:
    from nccid.imaging import deps
    from nccid.warehouse.dateshift import deployment_shift
    from nccid.warehouse.models import ImageRecord
    from nccid.warehouse.service import assign_set, get_warehouse

    shift = deployment_shift()
    offsets = (shift.days(entry.old_pseudonym), shift.days(entry.new_pseudonym))
    done = Relinked(entry.old_pseudonym, entry.new_pseudonym)
    done.set_name = assign_set(entry.site, entry.new_pseudonym)
    linked = deps.has_clinical_record(entry.new_pseudonym)
    warehouse = get_warehouse()
    pending = RelinkedImage.objects.filter(relink=entry, done=False)
    unrecorded = _unrecorded_sops(entry, pending)
    for item in pending.order_by("pk"):
        outcome = _move_image(entry, item, offsets, done.set_name, linked, warehouse)
        if outcome == "moved" and item.sop_uid in unrecorded:
            done.unrecorded += 1
    done.unrecorded_left = _unrecorded(ImageRecord.objects.filter(
        site_id=entry.site_id, pseudonym=entry.old_pseudonym))
    done.images, studies, since = _moved(entry)
    done.handed_out = len(_handed_out(since, None))
    done.gone = RelinkedImage.objects.filter(relink=entry).count() - done.images
    done.receipts = _move_receipts(entry, studies, linked)
    done.teaching_cases = _move_teaching_cases(entry, studies)
    done.clinical_left = _clinical_left(entry)
    return done


def _unrecorded_sops(entry: Relink, pending) -> set[str]:
    """The planned images still under the old patient that were stored before images
    recorded their linking number (moving one records this number)."""
    from nccid.warehouse.models import ImageRecord

    return set(ImageRecord.objects.filter(
        sop_uid__in=pending.values("sop_uid"), pseudonym=entry.old_pseudonym,
        hospital_hash__isnull=True).values_list("sop_uid", flat=True))


def _move_image(entry: Relink, item: RelinkedImage, offsets: tuple[int, int], set_name: str,
                linked: bool, warehouse) -> str:
    """One image: new objects, its row moved (once), the old objects deleted; "moved",
    "gone" (no longer stored) or "skipped" (its row names neither patient). ``offsets``: the
    old and new patients' date offsets."""
    from nccid.warehouse.dicom_json import header_json
    from nccid.warehouse.models import ImageRecord
    from nccid.warehouse.signals import images_changed

    row = ImageRecord.objects.filter(sop_uid=item.sop_uid).select_related("site").first()
    outcome = "moved"
    if row is None:
        outcome = "gone"
    elif row.pseudonym == entry.old_pseudonym:
        data, header = reassigned(warehouse.read(row.storage_key), entry.new_pseudonym,
                                  *offsets)
        fields = _moved_fields(row, entry.new_pseudonym, set_name, data, header)
        if warehouse.write_atomic(fields["storage_key"], data) != fields["sha256"]:
            raise RuntimeError("an image's checksum changed while it was written")
        warehouse.write_atomic(fields["metadata_key"], header_json(data, header))
        with transaction.atomic():
            part = row.catalogue_part
            taken = (ImageRecord.objects.filter(pk=row.pk, pseudonym=entry.old_pseudonym)
                     .update(**fields, linked=linked, catalogue_part=None,
                             hospital_hash=entry.hospital_hash))
            if taken and part is not None:  # its part is written again, without the old row
                ImageRecord.objects.filter(catalogue_part=part).update(catalogue_part=None)
            if taken:  # the figures counted it under the old patient: counted again
                images_changed.send(sender=ImageRecord)
    elif row.pseudonym != entry.new_pseudonym:
        outcome = "skipped"
    moved_keys = ImageRecord.objects.filter(sop_uid=item.sop_uid).values_list(
        "storage_key", "metadata_key").first() or ()
    stale = [key for key in (item.old_storage_key, item.old_metadata_key) if key not in moved_keys]
    if outcome != "skipped" and stale:
        warehouse.delete_many(stale)
    RelinkedImage.objects.filter(pk=item.pk).update(done=True)
    return outcome


def reassigned(data: bytes, pseudonym: str, old_days: int = 0, new_days: int = 0):
    """A stored image given to another patient: (bytes, header dataset). PatientID and
    PatientName become ``pseudonym``; under a date-shifting profile (``old_days`` and
    ``new_days`` the two patients' offsets, 0 unless the profile shifts dates) every date
    moves by their difference, as the de-identifier's own shift does, and the birth year
    becomes the one the new patient's offset gives (``_relinked_birth_year``)."""
    # The engine's own helpers: the move must shift, reduce and encode exactly as a file
    # de-identified for the new patient would have been.
    from nccid.imaging.deid.engine import (
        _as_deid_error,
        _encode,
        _read_header,
        _shift_dates,
        _text,
    )

    ds, pixel = _read_header(data)
    with _as_deid_error():
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        if new_days != old_days:
            birth = ds.get("PatientBirthDate")
            _shift_dates(ds, new_days - old_days)
            if birth is not None:
                _put_birth_date(ds, _relinked_birth_date(_text(birth), old_days, new_days))
    out = _encode(ds, pixel)
    return out, dcmread(BytesIO(out), stop_before_pixels=True)


def _put_birth_date(ds, value: str | None) -> None:
    if value is not None:
        ds.PatientBirthDate = value
    elif "PatientBirthDate" in ds:
        del ds.PatientBirthDate  # as the engine removes a date it cannot shift


def _relinked_birth_date(stored: str, old_days: int, new_days: int) -> str | None:
    """A stored birth date (``YYYY0101``, or empty) as the new patient's would be; None when
    the new offset takes it out of the calendar (the engine removes it then)."""
    if not (len(stored) >= 4 and stored[:4].isdigit()):
        return stored  # empty: the engine could not read it
    year = _relinked_birth_year(int(stored[:4]), old_days, new_days)
    return None if year is None else f"{year:04d}0101"


def _relinked_birth_year(stored: int, old_days: int, new_days: int) -> int | None:
    """The birth year de-identifying for the patient of offset ``new_days`` gives, from the
    year stored under ``old_days``. The engine reduces the birth date to 1 January of the real
    year, then shifts it: it stores the year of (1 January + offset), never more than a year
    away, so the real year is the one of the three around the stored year that gives it back
    (shifting the stored 1 January by the difference would lose a year whenever the new
    offset is the smaller). Two real years give one stored year only under an old offset of
    +365 (``both-ways`` scheme): a leap year, from itself and the year before. The later is
    taken: a year late for the year before, unless the new offset is +365 too
    (docs/withdrawal.md)."""
    real = [year for year in (stored + 1, stored, stored - 1)
            if _shifted_birth_year(year, old_days) == stored]
    return _shifted_birth_year(real[0] if real else stored, new_days)


def _shifted_birth_year(year: int, days: int) -> int | None:
    """The engine's stored year for a real birth year: its 1 January shifted by ``days``
    (``_shift_one``, None outside years 1-9999), reduced to the year."""
    from nccid.imaging.deid.engine import _shift_one

    if not 1 <= year <= 9999:
        return None
    shifted = _shift_one(f"{year:04d}0101", days)
    return None if shifted is None else int(shifted[:4])


def _moved_fields(row, pseudonym: str, set_name: str, data: bytes, header) -> dict:
    """The row's values as storing ``data`` for ``pseudonym`` in ``set_name`` would make them."""
    from nccid.imaging.deid import image_meta
    from nccid.warehouse.service import _new_record

    fresh = _new_record(row.site, pseudonym, set_name, data, image_meta(header))
    names = ("pseudonym", "set_name", "folder", "storage_key", "metadata_key", "size", "sha256",
             "study_date", "series_date", "patient_age")
    return {name: getattr(fresh, name) for name in names}


def _moved(entry: Relink) -> tuple[int, set[str], datetime | None]:
    """How many of the planned images the new patient now holds, their studies, and when the
    first of them arrived."""
    from nccid.warehouse.models import ImageRecord

    sops = list(RelinkedImage.objects.filter(relink=entry).values_list("sop_uid", flat=True))
    images, studies, arrivals = 0, set(), []
    for start in range(0, len(sops), _CHUNK):
        rows = ImageRecord.objects.filter(sop_uid__in=sops[start:start + _CHUNK],
                                          pseudonym=entry.new_pseudonym)
        images += rows.count()
        studies.update(rows.values_list("study_uid", flat=True))
        arrivals += rows.order_by("received_at").values_list("received_at", flat=True)[:1]
    return images, studies, min(arrivals, default=None)


def _move_receipts(entry: Relink, studies: set[str], linked: bool) -> int:
    """The site's receipts of the moved studies name the new patient."""
    from nccid.imaging.intake import refresh_receipt_status
    from nccid.imaging.models import StudyReceipt

    ordered, count = sorted(studies), 0
    for start in range(0, len(ordered), _CHUNK):
        query = StudyReceipt.objects.filter(site_id=entry.site_id, patient=entry.old_pseudonym,
                                            study_uid__in=ordered[start:start + _CHUNK])
        pks = list(query.values_list("pk", flat=True))
        count += StudyReceipt.objects.filter(pk__in=pks).update(
            patient=entry.new_pseudonym, **({"has_clinical": True} if linked else {}))
        refresh_receipt_status(StudyReceipt.objects.filter(pk__in=pks))
    return count


def _move_teaching_cases(entry: Relink, studies: set[str]) -> int:
    from nccid.research.models import TeachingCase

    ordered, count = sorted(studies), 0
    for start in range(0, len(ordered), _CHUNK):
        count += TeachingCase.objects.filter(pseudonym=entry.old_pseudonym,
                                             study_uid__in=ordered[start:start + _CHUNK]
                                             ).update(pseudonym=entry.new_pseudonym)
    return count


def _clinical_left(entry: Relink) -> tuple[str, ...]:
    """The kinds of the site's clinical records its sheet made under the old patient with
    this hospital number: no command removes one record, the data manager decides."""
    from nccid.clinical.models import ClinicalRecord

    return tuple(sorted(ClinicalRecord.objects.filter(
        site_id=entry.site_id, pseudonym=entry.old_pseudonym, hospital_hash=entry.hospital_hash
    ).values_list("kind", flat=True)))


def _forget_misfiled(pseudonym: str) -> bool:
    """The pseudonym a hospital number made when read as an NHS/CHI number, once nothing names
    it: its vault entry (the hospital number kept as an NHS number) and its set go. False, and
    both kept, while anything still names it (another site's images, a receipt, a case)."""
    from nccid.identity.models import VaultEntry
    from nccid.imaging.models import HeldImage, StudyReceipt
    from nccid.research.models import TeachingCase
    from nccid.warehouse.models import ImageRecord, PatientSet

    from .services import _forget_deleted_vault_pages

    if _names_a_patient(pseudonym) or any(
            model.objects.filter(**{field: pseudonym}).exists() for model, field in (
                (ImageRecord, "pseudonym"), (HeldImage, "pseudonym"), (StudyReceipt, "patient"),
                (TeachingCase, "pseudonym"))):
        return False
    PatientSet.objects.filter(pseudonym=pseudonym).delete()
    VaultEntry.objects.filter(pseudonym=pseudonym).delete()
    _forget_deleted_vault_pages()
    return True
