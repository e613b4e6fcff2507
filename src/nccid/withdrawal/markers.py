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
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from nccid.accounts.models import audit
from nccid.warehouse.layout import WITHDRAWN_PREFIX, withdrawal_marker_key

from .models import ReinstatedWithdrawal, Withdrawal

log = logging.getLogger("nccid.withdrawal")

# The reason on a withdrawal re-applied from its marker (the original one stayed in the
# database the backup predates; the audit log, if not restored too, still holds it).
REAPPLIED = ("re-applied from the warehouse's withdrawal marker: the database was restored "
             "from a backup made before this withdrawal")


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


def marked() -> set[str]:
    """The pseudonyms the warehouse marks withdrawn: one listing of ``withdrawn/`` (on S3, a
    request per thousand markers)."""
    prefix = f"{WITHDRAWN_PREFIX}/"
    return {key.removeprefix(prefix).removesuffix(".json")
            for key in _warehouse().iter_keys(WITHDRAWN_PREFIX)
            if key.startswith(prefix) and key.endswith(".json")}


def marked_date(pseudonym: str) -> datetime:
    """When the marked withdrawal of ``pseudonym`` was made."""
    body = json.loads(_warehouse().read(withdrawal_marker_key(pseudonym)))
    return datetime.fromisoformat(body["withdrawn_at"])


@dataclass
class Differences:
    """Where the database's withdrawal list and the warehouse's markers disagree."""

    unapplied: dict[str, datetime] = field(default_factory=dict)  # marked, not on the list
    stale: list[str] = field(default_factory=list)  # marked, but reinstated since
    unmarked: list[str] = field(default_factory=list)  # on the list, no marker

    @property
    def any(self) -> bool:
        return bool(self.unapplied or self.stale or self.unmarked)


def differences() -> Differences:
    """Compare the list with the markers: one listing, and a read of each marker the list
    lacks (none, normally)."""
    markers = marked()
    listed = set(Withdrawal.objects.values_list("pseudonym", flat=True))
    found = Differences(unmarked=sorted(listed - markers))
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


def reapply(*, write_missing: bool = False) -> Mended:
    """Re-apply each withdrawal the warehouse marks and the database lacks (the patient goes on
    the list again, dated as marked, and everything of theirs the restored database brought
    back is removed: ``services.withdraw`` as ``system``, audited
    ``patient.withdraw.reapplied``), remove stale markers, and with ``write_missing`` write
    the markers of listed withdrawals without one (withdrawals made before markers existed).
    The catalogue is not refreshed here: the caller does (or is the refresh)."""
    from .services import withdraw_as_system

    found, done = differences(), Mended()
    for pseudonym, withdrawn_at in found.unapplied.items():
        withdraw_as_system(pseudonym, withdrawn_at, REAPPLIED)
        done.reapplied.append(pseudonym)
        log.warning("re-applied the withdrawal of %s (the database was older than it)", pseudonym)
    for pseudonym in found.stale:
        remove_marker(pseudonym)
        audit("system", "withdrawal.marker.stale", pseudonym=pseudonym)
        done.stale_removed.append(pseudonym)
    if write_missing:
        for entry in Withdrawal.objects.filter(pseudonym__in=found.unmarked):
            write_marker(entry.pseudonym, entry.requested_at)
            done.markers_written += 1
    return done
