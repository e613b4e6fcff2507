"""Bringing a warehouse written by an older release up to the current one; ``nccid init`` runs
``upgrade_warehouse`` on every start of an upgrade (after ``deid_profile.check_deid_profile``:
the profile itself never changes once data exist).

The clinical JSON (``{set}/data/<pseudonym>/<kind>-<SITE>.json``) is written under the date
rule of the moment (``dateshift``): releases before clinical dates were shifted wrote real
dates under ``shift-dates`` too, and those JSON stay as written until rewritten. Their real
dates beside the shifted ones of the images (and of the catalogue) give each patient's offset
away. A stamp (``CLINICAL_STAMP_KEY``) says under which rule every clinical JSON was last
written (``sync_clinical`` writes it after rewriting them all); a warehouse whose stamp is
not the deployment's rule has its clinical JSON rewritten here, then the catalogue refreshed
twice (the first refresh rebuilds its clinical view and, under ``shift-dates``, rewrites image
parts written with arrival times; the second removes the previous version's files). A catalogue
whose clinical table predates a column the exports need (``national``, the national bucket's
files) is refreshed too: research hosts cannot refresh it (no key file, docs/research.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .layout import CATALOGUE_PREFIX

# Clinical columns exports read that catalogues of older releases lack (13f43f5: national).
REQUIRED_CLINICAL_COLUMNS = frozenset({"national"})

# Beside the catalogue's state: not part of the national bucket layout.
CLINICAL_STAMP_KEY = f"{CATALOGUE_PREFIX}/clinical-json.json"
STALE_CLINICAL_JSON = ("the warehouse's clinical JSON was written under another date rule than "
                       "this deployment's deid_profile (a release before clinical dates were "
                       "shifted): run 'nccid init' to rewrite it")


@dataclass
class Upgraded:
    clinical_rewritten: int | None = None  # None: the clinical JSON was current
    catalogue_refreshed: bool = False
    withdrawals_reapplied: list[str] = field(default_factory=list)  # the database lacked them
    markers_written: int = 0  # withdrawals made before the warehouse kept markers
    stale_markers_removed: list[str] = field(default_factory=list)  # reinstated since
    studies_reapplied: list[str] = field(default_factory=list)  # removals the database lacked
    study_markers_written: int = 0  # removals made before the warehouse kept markers


def read_clinical_stamp(warehouse=None) -> dict | None:
    """The stamp of the warehouse's clinical JSON, or None (never written: an older release)."""
    from .service import get_warehouse

    warehouse = warehouse or get_warehouse()
    if not warehouse.exists(CLINICAL_STAMP_KEY):
        return None
    return json.loads(warehouse.read(CLINICAL_STAMP_KEY))


def record_clinical_rule(dates_shifted: bool, warehouse=None) -> None:
    """Stamp the clinical JSON as all written under this rule (after each was rewritten)."""
    from .service import get_warehouse

    stamp = {"dates_shifted": dates_shifted,
             "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
    (warehouse or get_warehouse()).write_atomic(CLINICAL_STAMP_KEY, json.dumps(stamp).encode())


def clinical_json_stale() -> bool:
    """Whether clinical JSON may hold dates written under another rule than the deployment's.

    Only if records exist (an empty installation may change its profile: its stamp is of no
    JSON). Without a stamp (an older release) only ``shift-dates`` is in doubt: every release
    wrote real dates under ``retain-dates``."""
    from nccid.clinical.models import ClinicalRecord

    from .dateshift import deployment_shift

    if not ClinicalRecord.objects.exists():
        return False
    stamp = read_clinical_stamp()
    shifts = deployment_shift().shifts
    if stamp is not None:
        return stamp.get("dates_shifted") != shifts
    return shifts


def clinical_table_current(warehouse, state: dict) -> bool:
    """Whether every clinical Parquet file the catalogue state names has the columns exports
    need (only the files' footers are read)."""
    import pyarrow.parquet as pq

    from .catalogue import _key

    for entry in state.get("files", {}).get("clinical", []):
        with warehouse.open(_key(entry["key"])) as handle:
            if not REQUIRED_CLINICAL_COLUMNS <= set(pq.read_schema(handle).names):
                return False
    return True


def upgrade_warehouse(on_progress: Callable[[int, int], None] | None = None) -> Upgraded:
    """Re-apply the withdrawals and study removals the warehouse marks and the database lacks
    (a database restored from a backup older than them) and mark those made before markers existed
    (``nccid.withdrawal.markers``); rewrite clinical JSON written under another date rule;
    then refresh the catalogue twice if either changed it (also when only its image parts
    still hold arrival times under ``shift-dates``, or its clinical table lacks a column
    exports need); stamp a warehouse without a stamp, or
    with the other rule's while it holds no clinical record.
    Idempotent: a current warehouse is only read."""
    from nccid.withdrawal.markers import reapply

    from .catalogue import ARRIVALS_WITHHELD, STATE_KEY, refresh_catalogue
    from .dateshift import deployment_shift
    from .service import get_warehouse, sync_clinical

    warehouse, shifts = get_warehouse(), deployment_shift().shifts
    mended = reapply(write_missing=True)  # first: nothing below may write their data back
    done = Upgraded(withdrawals_reapplied=mended.reapplied, markers_written=mended.markers_written,
                    stale_markers_removed=mended.stale_removed,
                    studies_reapplied=mended.studies_reapplied,
                    study_markers_written=mended.study_markers_written)
    if clinical_json_stale():
        done.clinical_rewritten = sync_clinical(on_progress)  # stamps the warehouse
    elif (read_clinical_stamp(warehouse) or {}).get("dates_shifted") != shifts:
        record_clinical_rule(shifts, warehouse)
    if not warehouse.exists(STATE_KEY):
        return done  # never catalogued: the first refresh writes it under the current rule
    state = json.loads(warehouse.read(STATE_KEY))
    if (done.clinical_rewritten is not None or done.withdrawals_reapplied or done.studies_reapplied
            or (shifts and not state.get(ARRIVALS_WITHHELD))
            or not clinical_table_current(warehouse, state)):
        refresh_catalogue()
        refresh_catalogue()
        done.catalogue_refreshed = True
    return done
