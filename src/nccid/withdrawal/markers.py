"""The withdrawal list kept a second time, in the warehouse: one marker per withdrawn patient.

The list lives in the main database, so restoring a backup of the databases made before a
withdrawal would forget it: the patient's rows and vault entry come back, intake accepts
them, and the repairs ``nccid warehouse verify`` suggests would write their clinical JSON
and catalogue rows back for researchers. The warehouse is not restored with the databases,
so it keeps ``withdrawn/<pseudonym>.json`` for each withdrawal: the pseudonym (in the key)
and the date of the withdrawal, nothing else (who and why stay in the database). The folder
is outside both sets: never exported, never catalogued (the catalogue is built from the
database), not part of the national bucket layout.

A withdrawal writes its marker once its list entry is committed, before anything is
deleted; a reinstatement removes it before the entry goes. So in the normal course every
marker has its entry, and a marker without one means a database older than the withdrawal:
``nccid init`` and the sweep before every catalogue refresh re-apply it (``reapply``),
intake refuses the patient meanwhile (``services.withdrawn_among``), and ``nccid warehouse
verify`` fails naming ``nccid init``. A marker whose withdrawal the database records as
reinstated (a warehouse restored from before the reinstatement) is stale and removed.

A study removal (``services.remove_study``: an identifier burned into an image) is marked the
same way, ``withdrawn/studies/<StudyUID>.json`` by the stored (keyed) UID researchers know,
with the date of the removal: restored rows of a removed study would otherwise be catalogued
again, counted missing by verify (whose ``--forget-missing`` asks the site to send the study
again) and the study taken in again. A removal cannot be undone, so no study marker is stale.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from nccid.accounts.models import audit
from nccid.warehouse.layout import (
    REMOVED_STUDIES_PREFIX,
    WITHDRAWN_PREFIX,
    study_removal_marker_key,
    withdrawal_marker_key,
)

from .models import ReinstatedWithdrawal, StudyWithdrawal, Withdrawal

log = logging.getLogger("nccid.withdrawal")

# The reason on a withdrawal re-applied from its marker (the original one stayed in the
# database the backup predates; the audit log, if not restored too, still holds it).
REAPPLIED = ("re-applied from the warehouse's withdrawal marker: the database was restored "
             "from a backup made before this withdrawal")
STUDY_REAPPLIED = ("re-applied from the warehouse's study removal marker: the database was "
                   "restored from a backup made before this removal")


def _warehouse():
    from nccid.warehouse.service import get_warehouse

    return get_warehouse()


def write_marker(pseudonym: str, withdrawn_at: datetime) -> None:
    """Mark ``pseudonym`` withdrawn (since ``withdrawn_at``) in the warehouse (idempotent)."""
    body = {"withdrawn_at": withdrawn_at.isoformat()}
    _warehouse().write_atomic(withdrawal_marker_key(pseudonym), json.dumps(body).encode())


def remove_marker(pseudonym: str) -> None:
    """The patient's marker, gone (a reinstatement); none is fine."""
    _warehouse().delete(withdrawal_marker_key(pseudonym))


def write_study_marker(study_uid: str, removed_at: datetime) -> None:
    """Mark the (stored) ``study_uid`` removed (since ``removed_at``) in the warehouse (idempotent)."""
    body = {"removed_at": removed_at.isoformat()}
    _warehouse().write_atomic(study_removal_marker_key(study_uid), json.dumps(body).encode())


def marked() -> set[str]:
    """The pseudonyms the warehouse marks withdrawn: one listing of ``withdrawn/`` (on S3, a
    request per thousand markers)."""
    return _marked_under(WITHDRAWN_PREFIX, _warehouse().iter_keys(WITHDRAWN_PREFIX))


def marked_studies() -> set[str]:
    """The (stored) Study Instance UIDs the warehouse marks removed: one listing of
    ``withdrawn/studies/``."""
    return _marked_under(REMOVED_STUDIES_PREFIX, _warehouse().iter_keys(REMOVED_STUDIES_PREFIX))


def _marked_under(prefix: str, keys) -> set[str]:
    """The names of the markers directly under ``prefix`` (``<prefix>/<name>.json``)."""
    names = (key.removeprefix(f"{prefix}/") for key in keys if key.startswith(f"{prefix}/"))
    return {name.removesuffix(".json") for name in names
            if name.endswith(".json") and "/" not in name}


def marked_date(pseudonym: str) -> datetime:
    """When the marked withdrawal of ``pseudonym`` was made."""
    body = json.loads(_warehouse().read(withdrawal_marker_key(pseudonym)))
    return datetime.fromisoformat(body["withdrawn_at"])


def marked_removal_date(study_uid: str) -> datetime:
    """When the marked removal of ``study_uid`` was made."""
    body = json.loads(_warehouse().read(study_removal_marker_key(study_uid)))
    return datetime.fromisoformat(body["removed_at"])


@dataclass
class Differences:
    """Where the database's lists (withdrawals, study removals) and the warehouse's markers
    disagree."""

    unapplied: dict[str, datetime] = field(default_factory=dict)  # marked, not on the list
    stale: list[str] = field(default_factory=list)  # marked, but reinstated since
    unmarked: list[str] = field(default_factory=list)  # on the list, no marker
    # the same for removed studies, by stored Study Instance UID (a removal is never undone)
    studies_unapplied: dict[str, datetime] = field(default_factory=dict)
    studies_unmarked: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.unapplied or self.stale or self.unmarked
                    or self.studies_unapplied or self.studies_unmarked)


def differences() -> Differences:
    """Compare the lists with the markers: one listing of ``withdrawn/`` (both kinds), and a
    read of each marker the lists lack (none, normally)."""
    keys = list(_warehouse().iter_keys(WITHDRAWN_PREFIX))
    markers, studies = _marked_under(WITHDRAWN_PREFIX, keys), _marked_under(REMOVED_STUDIES_PREFIX, keys)
    listed = set(Withdrawal.objects.values_list("pseudonym", flat=True))
    removed = set(StudyWithdrawal.objects.values_list("study_uid", flat=True))
    found = Differences(unmarked=sorted(listed - markers),
                        studies_unmarked=sorted(removed - studies),
                        studies_unapplied={uid: marked_removal_date(uid)
                                           for uid in sorted(studies - removed)})
    for pseudonym in sorted(markers - listed):
        withdrawn_at = marked_date(pseudonym)
        if ReinstatedWithdrawal.objects.filter(pseudonym=pseudonym,
                                               requested_at__gte=withdrawn_at).exists():
            found.stale.append(pseudonym)
        else:
            found.unapplied[pseudonym] = withdrawn_at
    return found


@dataclass
class Mended:
    reapplied: list[str] = field(default_factory=list)
    stale_removed: list[str] = field(default_factory=list)
    markers_written: int = 0
    studies_reapplied: list[str] = field(default_factory=list)
    study_markers_written: int = 0


def reapply(*, write_missing: bool = False) -> Mended:
    """Re-apply each withdrawal the warehouse marks and the database lacks (the patient goes on
    the list again, dated as marked, and everything of theirs the restored database brought
    back is removed: ``services.withdraw`` as ``system``, audited
    ``patient.withdraw.reapplied``), and likewise each study removal (``study.remove.reapplied``);
    remove stale markers; and with ``write_missing`` write the markers of listed withdrawals
    and removals without one (made before markers existed). The catalogue is not refreshed
    here: the caller does (or is the refresh)."""
    from .services import remove_study_as_system, withdraw_as_system

    found, done = differences(), Mended()
    for pseudonym, withdrawn_at in found.unapplied.items():
        withdraw_as_system(pseudonym, withdrawn_at, REAPPLIED)
        done.reapplied.append(pseudonym)
        log.warning("re-applied the withdrawal of %s (the database was older than it)", pseudonym)
    for study_uid, removed_at in found.studies_unapplied.items():
        remove_study_as_system(study_uid, removed_at, STUDY_REAPPLIED)
        done.studies_reapplied.append(study_uid)
        log.warning("re-applied the removal of study %s (the database was older than it)", study_uid)
    for pseudonym in found.stale:
        remove_marker(pseudonym)
        audit("system", "withdrawal.marker.stale", pseudonym=pseudonym)
        done.stale_removed.append(pseudonym)
    if write_missing:
        for entry in Withdrawal.objects.filter(pseudonym__in=found.unmarked):
            write_marker(entry.pseudonym, entry.requested_at)
            done.markers_written += 1
        for removal in StudyWithdrawal.objects.filter(study_uid__in=found.studies_unmarked):
            write_study_marker(removal.study_uid, removal.requested_at)
            done.study_markers_written += 1
    return done
