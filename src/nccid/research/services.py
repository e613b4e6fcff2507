"""Research business rules shared by the CLI, the API and the portal: AI validation and
modelling data. (Cohorts and exports live in ``cohort`` and ``export``, teaching in ``teaching``.)"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import modelling
from .cohort import HANDED_OUT_SETS, ScopeError, scope_for
from .source import Source, default_source
from .validation_report import GroundTruth, Report, Truth, evaluate, read_predictions, render_html

VALIDATION_SET = "validation"


def require_data_manager(user: Any) -> None:
    if user is None or not getattr(user, "is_data_manager", False):
        raise ScopeError("only data managers and administrators may do this")


# ---------------------------------------------------------------- AI validation

def load_ground_truth(con) -> GroundTruth:
    """Validation-set truth, read inside the system only: it never leaves as rows."""
    patients, unknown = {}, set()
    for pseudonym, status, sex, age, ethnicity, site in con.execute(
            "SELECT pseudonym, lower(covid_status), sex, age, ethnicity, sites[1] FROM patients "
            "WHERE set_name = $s", {"s": VALIDATION_SET}).fetchall():
        if status in ("positive", "negative"):
            patients[pseudonym] = Truth(int(status == "positive"), site or "Unknown",
                                        sex or "Unknown", None if age is None else int(age),
                                        ethnicity or "Unknown")
        else:
            unknown.add(pseudonym)
    images = {sop: (p, site) for sop, p, site in con.execute(
        "SELECT sop_uid, pseudonym, site FROM images WHERE set_name = $s",
        {"s": VALIDATION_SET}).fetchall()}

    def in_training(ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        rows = con.execute(
            "SELECT pseudonym FROM patients WHERE set_name <> $s AND list_contains($ids, pseudonym) "
            "UNION SELECT sop_uid FROM images WHERE set_name <> $s AND list_contains($ids, sop_uid)",
            {"s": VALIDATION_SET, "ids": wanted}).fetchall()
        return {r[0] for r in rows}

    return GroundTruth(patients, images, unknown, in_training)


@dataclass
class ValidationOutcome:
    html: str
    report: Report


def validate_predictions(user: Any, text: str, operating_point: str | float = 0.5,
                         source: Source | None = None, title: str = "AI validation report"
                         ) -> ValidationOutcome:
    """Score predictions against the validation set; audited with aggregate figures only."""
    from nccid.accounts.models import audit

    require_data_manager(user)
    source = source or default_source()
    con = source.connect()
    try:
        truth = load_ground_truth(con)
        try:
            scored = read_predictions(text, truth)
        except ValueError as exc:
            audit(user, "research.validate.rejected", problems=len(getattr(exc, "errors", [1])))
            raise
        report = evaluate(scored, truth, operating_point)
    finally:
        con.close()
    auc = report.overall["auc"][0]
    audit(user, "research.validate", unit=report.unit, predictions=report.overall["n"],
          operating_point=str(operating_point), auc=None if auc is None else round(auc, 4))
    return ValidationOutcome(render_html(report, title), report)


# ---------------------------------------------------------------- modelling

def modelling_outputs(user: Any, directory: str | Path, source: Source | None = None) -> dict:
    """Weekly counts and intervals (CSV + PNG) from the cleaned clinical records the user may see."""
    from nccid.accounts.models import audit

    if not (getattr(user, "is_researcher", False) or getattr(user, "is_data_manager", False)):
        raise ScopeError("only researchers, data managers and administrators may do this")
    sets = scope_for(user) if getattr(user, "is_researcher", False) else HANDED_OUT_SETS
    source = source or default_source()
    con = source.connect()
    try:
        rows = con.execute(
            "SELECT pseudonym, site, kind, cleaned FROM clinical WHERE list_contains($sets, set_name)",
            {"sets": list(sets)}).fetchall()
    finally:
        con.close()
    records = [modelling.Record(p, site, kind, modelling.parse_cleaned(cleaned))
               for p, site, kind, cleaned in rows]
    written = modelling.write_outputs(records, Path(directory))
    audit(user, "research.modelling", sets=list(sets), records=len(records),
          files=[p.name for p in written])
    return {"records": len(records), "files": written}
