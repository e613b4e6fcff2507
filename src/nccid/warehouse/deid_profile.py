"""The ``deid_profile`` an installation's data were de-identified under, recorded so that
another one is refused once data exist.

Under ``retain-dates`` images and clinical dates keep their real dates; under ``shift-dates``
each patient's move by their offset. A patient with data under both (two studies taken the
same day, stored either side of a switch; a shifted clinical date beside an image's real one)
shows their offset, and with it every real date. Stored images are never rewritten, so the
profile is fixed once an image (stored, waiting or held) or a clinical record is stored; an
installation holding none may change it freely, and the record follows.

The record is one row of the main database (``DeidProfileRecord``), checked when ``nccid
init`` starts and by every command that uses the key (imports, ``node``, ``serve``, ``run``,
the upkeep...), before it writes anything. An installation from a release before the record
has its profile inferred once, at the first check: from the newest stored image's header
(Longitudinal Temporal Information Modified, which every release wrote), else from the
clinical JSON's date-rule stamp (``upgrade``), else it is the setting (nothing tells).

The date shift scheme is recorded beside it (``date_shift``): a new installation draws offsets
backward only (``Keyring.date_shift_days``), so no shifted date is in the future. One that
already holds data under ``shift-dates`` from a release before that rule (offsets both ways)
keeps both ways, for good: every patient's offset must stay the one their data already have.
"""

from __future__ import annotations

import json

from nccid.config import DEID_PROFILES, ConfigError, get_settings, setting_origin
from nccid.identity.keys import SHIFT_BACKWARD, SHIFT_BOTH_WAYS

LONGITUDINAL_TEMPORAL = "00280303"  # (0028,0303) Longitudinal Temporal Information Modified
SET_WHILE_EMPTY = "set while no data were stored"


def check_deid_profile() -> None:
    """Refuse (one line) a ``deid_profile`` other than the recorded one once the installation
    holds data; otherwise record the setting (a first run, an empty installation's change)."""
    from django.utils import timezone

    from .models import DeidProfileRecord

    configured = get_settings().deid_profile
    record = DeidProfileRecord.objects.filter(pk=1).first()
    if record is not None and record.profile == configured:
        if not record.date_shift:  # a row of a release before the scheme was recorded
            record.date_shift = _scheme_of_older_data(configured)
            record.save(update_fields=["date_shift"])
        return  # the usual case: one query
    how, scheme = SET_WHILE_EMPTY, SHIFT_BACKWARD
    if holds_data():
        if record is not None:
            raise ConfigError(profile_changed(configured, record.profile, _recorded_on(record)))
        recorded, how = inferred_profile()  # data an older release stored
        if recorded not in (None, configured):
            raise ConfigError(profile_changed(configured, recorded, how))
        how = how or "the setting when first checked, beside older data"
        scheme = _scheme_of_older_data(configured)
    if record is not None and record.date_shift == SHIFT_BOTH_WAYS:
        scheme = SHIFT_BOTH_WAYS  # offsets researchers may already hold: never changed
    DeidProfileRecord.objects.update_or_create(pk=1, defaults={
        "profile": configured, "how": how, "recorded_at": timezone.now(), "date_shift": scheme})


def date_shift_scheme() -> str:
    """How this installation draws patients' date offsets (``Keyring.date_shift_days``): as
    recorded, else backward (nothing is stored before ``check_deid_profile`` records it)."""
    from .models import DeidProfileRecord

    recorded = DeidProfileRecord.objects.filter(pk=1).values_list("date_shift", flat=True).first()
    if recorded:
        return recorded
    if recorded is not None:  # a row of an older release no check has completed yet
        return _scheme_of_older_data(get_settings().deid_profile)
    return SHIFT_BACKWARD


def _scheme_of_older_data(profile: str) -> str:
    """The scheme of data stored by a release before the scheme was recorded: both ways if
    they were shifted (every such release drew offsets both ways), else backward from now."""
    shifted = _profiles().get(profile, {}).get("date_shift")
    return SHIFT_BOTH_WAYS if shifted and holds_data() else SHIFT_BACKWARD


def holds_data() -> bool:
    """Whether anything de-identified under a profile is stored: an image (in the warehouse,
    waiting for its clinical record, or held for review) or a clinical record."""
    from nccid.clinical.models import ClinicalRecord
    from nccid.imaging.models import HeldImage, HeldStatus, PendingImage

    from .models import ImageRecord

    return (ImageRecord.objects.exists() or ClinicalRecord.objects.exists()
            or PendingImage.objects.exists()
            or HeldImage.objects.filter(status=HeldStatus.HELD).exists())


def inferred_profile() -> tuple[str | None, str]:
    """(profile, how it was told) for data stored before the record; (None, "") if nothing tells."""
    by_images = _profile_of_newest_image()
    if by_images:
        return by_images, "inferred from its newest stored image's header"
    by_stamp = _profile_of_clinical_stamp()
    if by_stamp:
        return by_stamp, "inferred from the warehouse's clinical JSON stamp"
    return None, ""


def profile_changed(configured: str, recorded: str, how: str) -> str:
    return (f"deid_profile is {configured} ({setting_origin('deid_profile')}), but this "
            f"installation's images and clinical records were de-identified under {recorded} "
            f"({how}): a patient's data under both would give their date offset away. Set "
            f"deid_profile back to {recorded}, or use {configured} in a new installation (a new "
            "NCCID_HOME, databases and warehouse); nothing was changed")


def _recorded_on(record) -> str:
    return f"recorded {record.recorded_at:%Y-%m-%d}, {record.how}"


def _profiles() -> dict[str, dict]:
    from nccid.imaging.deid.profile import load_data

    return {name: spec for name, spec in load_data("profiles.json").items() if name in DEID_PROFILES}


def _profile_of_newest_image() -> str | None:
    """The profile the newest stored image's header names, or None (no image, or its header
    missing or silent)."""
    from .models import ImageRecord
    from .service import get_warehouse

    newest = ImageRecord.objects.order_by("-id").values_list("metadata_key", flat=True).first()
    warehouse = get_warehouse()
    if newest is None or not warehouse.exists(newest):
        return None
    element = json.loads(warehouse.read(newest)).get(LONGITUDINAL_TEMPORAL) or {}
    value = (element.get("Value") or [None])[0]
    return next((name for name, spec in _profiles().items()
                 if spec["longitudinal_temporal"] == value), None)


def _profile_of_clinical_stamp() -> str | None:
    from .upgrade import read_clinical_stamp

    stamp = read_clinical_stamp()
    if stamp is None or "dates_shifted" not in stamp:
        return None
    return next((name for name, spec in _profiles().items()
                 if spec["date_shift"] == stamp["dates_shifted"]), None)
