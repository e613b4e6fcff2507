"""Score an AI product's predictions on the held-out validation set (pure: no Django).

The caller supplies the ground truth (``Truth`` per patient); the report carries aggregate
metrics only: AUC with a DeLong 95% CI, sensitivity/specificity at an operating point, the
ROC curve as an embedded PNG, and the same by site, sex, age band and ethnicity.

No patient's status may be read off a report: predictions must cover at least ``min_group``
positive and ``min_group`` negative patients, a subgroup is shown only when it has that many
of each too, and when some of a breakdown's groups are suppressed, the smallest shown ones
join them until the suppressed groups together hold that many of each (complementary
suppression), so no suppressed figure follows by subtracting the shown rows from the overall.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from string import Template

import numpy as np

ID_COLUMNS = ("pseudonym", "sop_instance_uid", "sop_uid", "sopinstanceuid")
SCORE_COLUMNS = ("score", "prediction", "probability")
AGE_BANDS = ((0, 17, "0-17"), (18, 39, "18-39"), (40, 59, "40-59"), (60, 79, "60-79"), (80, 200, "80+"))
MIN_GROUP = 10
MAX_ERRORS = 50
Z95 = 1.959963984540054
# Only de-identified forms are ever echoed back in an error message.
_SAFE_ID = re.compile(r"^(NCCID-[A-Z2-7]{16}|2\.25\.\d{1,39})$")


class PredictionError(ValueError):
    """The predictions file has problems; ``errors`` lists each with its line number."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        shown = errors[:MAX_ERRORS]
        more = f"\n… and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        super().__init__("the predictions file was not scored:\n" + "\n".join(shown) + more)


@dataclass(frozen=True)
class Truth:
    label: int  # 1 positive, 0 negative
    site: str
    sex: str
    age: int | None
    ethnicity: str


@dataclass
class GroundTruth:
    patients: dict[str, Truth]  # validation-set pseudonym -> truth (known status only)
    images: dict[str, tuple[str, str]]  # validation-set SOP UID -> (pseudonym, site)
    unknown_status: set[str] = field(default_factory=set)  # validation patients without status
    in_training: Callable[[Iterable[str]], set[str]] = lambda ids: set()


@dataclass
class Scored:
    unit: str  # "patient" or "image"
    scores: np.ndarray
    labels: np.ndarray
    truths: list[Truth]
    pseudonyms: list[str]
    skipped_unknown_status: int = 0


def _safe(value: str) -> str:
    return f" ({value})" if _SAFE_ID.match(value) else ""


def read_predictions(text: str, truth: GroundTruth, min_group: int = MIN_GROUP) -> Scored:
    """Parse and check a predictions CSV; every problem is reported with its line number.

    Predictions covering fewer than ``min_group`` patients of either class are refused."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower().replace(" ", "_") for h in next(reader, [])]
    id_col = next((header.index(c) for c in ID_COLUMNS if c in header), None)
    score_col = next((header.index(c) for c in SCORE_COLUMNS if c in header), None)
    if id_col is None or score_col is None:
        raise PredictionError(["line 1: the header needs an ID column (pseudonym or "
                               "sop_instance_uid) and a score column (score)"])
    unit = "patient" if header[id_col] == "pseudonym" else "image"
    errors: list[str] = []
    seen: dict[str, int] = {}
    rows: list[tuple[int, str, float]] = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(id_col, score_col):
            errors.append(f"line {line}: expected {len(header)} columns, found {len(row)}")
            continue
        ident, raw = row[id_col].strip(), row[score_col].strip()
        try:
            score = float(raw)
            if not math.isfinite(score):
                raise ValueError
        except ValueError:
            errors.append(f"line {line}: score {raw[:20]!r} is not a finite number")
            continue
        if ident in seen:
            errors.append(f"line {line}: duplicate ID{_safe(ident)}, first given on line {seen[ident]}")
            continue
        seen[ident] = line
        rows.append((line, ident, score))

    known = truth.patients if unit == "patient" else truth.images
    strangers = [(line, i) for line, i, _ in rows if i not in known and i not in truth.unknown_status]
    training = truth.in_training([i for _, i in strangers]) if strangers else set()
    for line, ident in strangers:
        if ident in training:
            errors.append(f"line {line}: ID{_safe(ident)} belongs to the training set; submit "
                          "predictions for the validation set only")
        else:
            errors.append(f"line {line}: unknown ID{_safe(ident)}: not a validation-set "
                          f"{'pseudonym' if unit == 'patient' else 'SOP Instance UID'}")
    if errors:
        raise PredictionError(errors)

    scores, labels, truths, pseudonyms, skipped = [], [], [], [], 0
    for _, ident, score in rows:
        pseudonym, site = (ident, None) if unit == "patient" else truth.images[ident]
        person = truth.patients.get(pseudonym)
        if person is None:
            skipped += 1
            continue
        if site is not None and site != person.site:
            person = Truth(person.label, site, person.sex, person.age, person.ethnicity)
        scores.append(score)
        labels.append(person.label)
        truths.append(person)
        pseudonyms.append(pseudonym)
    scored = Scored(unit, np.asarray(scores, float), np.asarray(labels, int), truths, pseudonyms,
                    skipped)
    require_enough_cases(scored, min_group)
    return scored


def _patients_by_class(scored: Scored, mask: np.ndarray | None = None) -> tuple[set[str], set[str]]:
    """The distinct patients (not images) with a positive and with a negative status."""
    chosen = range(len(scored.labels)) if mask is None else np.flatnonzero(mask)
    positive = {scored.pseudonyms[i] for i in chosen if scored.labels[i] == 1}
    negative = {scored.pseudonyms[i] for i in chosen if scored.labels[i] == 0}
    return positive, negative


def require_enough_cases(scored: Scored, min_group: int = MIN_GROUP) -> None:
    """Refuse a report on too few patients of either class: its counts would give their status.

    The message never says which class falls short, or by how much."""
    positive, negative = _patients_by_class(scored)
    if min(len(positive), len(negative)) < min_group:
        raise PredictionError([
            f"too few patients to report on: the predictions must cover at least {min_group} "
            f"COVID-positive and {min_group} COVID-negative validation patients, so that no "
            "patient's status can be read off the report"])


# ---------------------------------------------------------------- metrics

def _midranks(x: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def delong_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float | None]:
    """AUC and its DeLong variance (fast algorithm of Sun & Xu, 2014); variance None if too few."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise ValueError("the AUC needs both positive and negative cases")
    tz = _midranks(np.concatenate([pos, neg]))
    auc = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    if m < 2 or n < 2:
        return float(auc), None
    v01 = (tz[:m] - _midranks(pos)) / n
    v10 = 1.0 - (tz[m:] - _midranks(neg)) / m
    return float(auc), float(np.var(v01, ddof=1) / m + np.var(v10, ddof=1) / n)


def auc_ci(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float | None, float | None]:
    auc, var = delong_auc(scores, labels)
    if var is None:
        return auc, None, None
    half = Z95 * math.sqrt(max(var, 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positive rates at every distinct threshold (score >= threshold is positive)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    tpr = np.r_[0.0, tp / max(y.sum(), 1)]
    fpr = np.r_[0.0, fp / max((1 - y).sum(), 1)]
    return fpr, tpr, np.r_[np.inf, s[last]]


def youden_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    fpr, tpr, thresholds = roc_curve(scores, labels)
    return float(thresholds[1:][np.argmax((tpr - fpr)[1:])])


def wilson(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    if n == 0:
        return None, None, None
    p = k / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    predicted = scores >= threshold
    pos, neg = labels == 1, labels == 0
    out = {"n": int(len(labels)), "positives": int(pos.sum()), "negatives": int(neg.sum()),
           "sensitivity": wilson(int((predicted & pos).sum()), int(pos.sum())),
           "specificity": wilson(int((~predicted & neg).sum()), int(neg.sum())),
           "auc": (None, None, None)}
    if pos.any() and neg.any():
        out["auc"] = auc_ci(scores, labels)
    return out


def age_band(age: int | None) -> str:
    if age is None:
        return "Unknown"
    return next((name for low, high, name in AGE_BANDS if low <= age <= high), "Unknown")


SUBGROUPS: dict[str, Callable[[Truth], str]] = {
    "Site": lambda t: t.site or "Unknown",
    "Sex": lambda t: t.sex or "Unknown",
    "Age band": lambda t: age_band(t.age),
    "Ethnicity": lambda t: t.ethnicity or "Unknown",
}


@dataclass
class Report:
    unit: str
    operating_point: str
    threshold: float
    overall: dict
    subgroups: dict[str, list[tuple[str, dict | None]]]  # None: suppressed (too small)
    roc: tuple[np.ndarray, np.ndarray]
    skipped_unknown_status: int
    coverage: tuple[int, int]  # patients predicted, validation patients with a known status
    min_group: int


def evaluate(scored: Scored, truth: GroundTruth, operating_point: str | float = 0.5,
             min_group: int = MIN_GROUP) -> Report:
    require_enough_cases(scored, min_group)
    s, y = scored.scores, scored.labels
    if str(operating_point).lower() == "youden":
        threshold, described = youden_threshold(s, y), "Youden index (max sensitivity + specificity - 1)"
    else:
        try:
            threshold = float(operating_point)
        except ValueError as exc:
            raise ValueError(f"operating point {operating_point!r}: give a number or 'youden'") from exc
        described = f"score ≥ {threshold:g}"
    groups = {name: _breakdown(scored, np.array([key(t) for t in scored.truths]), threshold, min_group)
              for name, key in SUBGROUPS.items()}
    fpr, tpr, _ = roc_curve(s, y)
    covered = len(set(scored.pseudonyms))
    return Report(scored.unit, described, threshold, metrics(s, y, threshold), groups, (fpr, tpr),
                  scored.skipped_unknown_status, (covered, len(truth.patients)), min_group)


def _breakdown(scored: Scored, values: np.ndarray, threshold: float,
               min_group: int) -> list[tuple[str, dict | None]]:
    """One row per group; None for a suppressed group."""
    masks = {value: values == value for value in sorted(set(values))}
    hidden = suppressed_groups({v: _patients_by_class(scored, m) for v, m in masks.items()}, min_group)
    return [(v, None if v in hidden else metrics(scored.scores[m], scored.labels[m], threshold))
            for v, m in masks.items()]


def suppressed_groups(patients: dict[str, tuple[set[str], set[str]]], min_group: int) -> set[str]:
    """The groups to suppress, given each group's (positive, negative) patients.

    A group with fewer than ``min_group`` of either class is suppressed; then, while the
    suppressed groups together hold fewer than that, the smallest shown group joins them, so
    their combined figures (the overall less the shown rows) are as safe as a shown group."""
    def short(groups: set[str]) -> bool:
        positive = set().union(*(patients[g][0] for g in groups))
        negative = set().union(*(patients[g][1] for g in groups))
        return min(len(positive), len(negative)) < min_group

    hidden = {g for g in patients if short({g})}
    by_size = sorted(set(patients) - hidden, key=lambda g: (len(patients[g][0] | patients[g][1]), g))
    for group in by_size:
        if not hidden or not short(hidden):
            break
        hidden.add(group)
    return hidden


# ---------------------------------------------------------------- HTML

def roc_png(fpr: np.ndarray, tpr: np.ndarray, auc: float) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, lw=2, label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="Sensitivity (true positive rate)",
           xlim=(0, 1), ylim=(0, 1.01), title="ROC curve")
    ax.legend(loc="lower right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _fmt(triple: tuple) -> str:
    value, low, high = triple
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" ({low:.3f}–{high:.3f})" if low is not None else "")


def _row(name: str, m: dict | None, min_group: int) -> str:
    if m is None:
        return (f"<tr><td>{html.escape(name)}</td><td colspan=6>suppressed: fewer than "
                f"{min_group} positive or negative patients, here or in the suppressed groups "
                "together</td></tr>")
    cells = [name, str(m["n"]), str(m["positives"]), str(m["negatives"]),
             _fmt(m["auc"]), _fmt(m["sensitivity"]), _fmt(m["specificity"])]
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def render_html(report: Report, title: str = "AI validation report") -> str:
    """A self-contained HTML page (the ROC curve embedded as a base64 PNG)."""
    auc = report.overall["auc"][0]
    png = base64.b64encode(roc_png(*report.roc, auc if auc is not None else float("nan"))).decode()
    sections = []
    for name, rows in report.subgroups.items():
        body = "".join(_row(value, m, report.min_group) for value, m in rows)
        sections.append(f"<h2>By {html.escape(name.lower())}</h2><table>{_HEAD}{body}</table>")
    template = Template(resources.files("nccid.research").joinpath(
        "data/validation_report.html").read_text())
    return template.substitute(
        title=html.escape(title),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        unit=report.unit, operating_point=html.escape(report.operating_point),
        threshold=f"{report.threshold:.6g}", overall=_row("All", report.overall, 0),
        head=_HEAD, png=png, subgroups="\n".join(sections),
        skipped=report.skipped_unknown_status, min_group=report.min_group,
        covered=report.coverage[0], total=report.coverage[1],
    )


_HEAD = ("<tr><th>Group</th><th>N</th><th>Positive</th><th>Negative</th><th>AUC (95% CI)</th>"
         "<th>Sensitivity (95% CI)</th><th>Specificity (95% CI)</th></tr>")
