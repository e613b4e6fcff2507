"""The data managers' dashboard: figures from database aggregates, charts drawn as SVG.

Every figure is a GROUP BY in the database (never a scan of the warehouse), computed when the
data version changes and at most once per ``REFRESH_SECONDS``; the result is saved in a
``FigureState`` row so every worker shares it. Charts are drawn on the server with matplotlib
(no JavaScript, no CDN) and each has a table giving the same numbers for screen readers.
"""

from __future__ import annotations

import io
import threading
from collections import Counter, defaultdict
from datetime import date

from django.apps import apps
from django.db.models import Case, Count, Max, Min, OuterRef, Subquery, Sum, Value, When
from django.utils import timezone

from .models import FigureState
from .summary import (
    clinical_model,
    data_version,
    image_model,
    modality_categories,
    non_image_modalities,
)

DASHBOARD = "dashboard"
REFRESH_SECONDS = 60
AGE_BIN = 5
# The sex chart's bar for patients no record gives a sex: the negative template does not ask,
# and a patient may have images only.
NOT_RECORDED = "Not recorded"
# Fields whose completeness the dashboard reports (a cleaned value that is not None).
COMPLETENESS_FIELDS = {
    "positive": ["age", "sex", "ethnicity", "date_of_positive_covid_swab", "date_of_admission",
                 "itu_admission", "intubation", "death", "final_covid_status", "smoking_status",
                 "pmh_hypertension", "date_of_1st_cxr", "date_last_known_alive"],
    "negative": ["swabs", "latest_swab_date", "latest_swab_status"],
    "isaric": ["age", "sex", "date_of_symptom_onset", "date_of_admission", "outcome",
               "date_of_outcome", "isaric_4c_score"],
}
CHARTS = {
    "studies-by-centre": "Studies received over time, by centre",
    "studies-by-modality": "Studies received over time, by modality",
    "patients-by-centre": "Patients over time, by centre",
    "patients-by-status": "Patients over time, by COVID status",
    "patients-by-set": "Patients over time, by set",
    "age": "Age of patients (5-year bands)",
    "sex": "Sex of patients",
    "completeness": "Completeness of clinical fields, by centre",
}

_lock = threading.Lock()
_memo: dict = {"key": None, "board": None, "svgs": {}}


def _version_key() -> list:
    version = list(data_version())
    changed = clinical_model().objects.aggregate(m=Max("updated"))["m"]
    return version + [changed.isoformat() if changed else ""]


def get_dashboard(force: bool = False) -> dict:
    """The dashboard figures, recomputed when the data changed (at most once a minute)."""
    key = _version_key()
    with _lock:
        if not force and _memo["key"] == key:
            return _memo["board"]
    state = FigureState.objects.filter(name=DASHBOARD).first()
    fresh = state is not None and (
        state.data.get("key") == key
        or (timezone.now() - state.updated).total_seconds() < REFRESH_SECONDS
    )
    if force or not fresh:
        board = compute_dashboard()
        board["key"] = key
        FigureState.objects.update_or_create(name=DASHBOARD, defaults={"data": board})
    else:
        board = state.data
    with _lock:
        _memo.update(key=board["key"], board=board, svgs={})
    return board


# ---------------------------------------------------------------- figures

def _month(value) -> str:
    """The month ``value`` fell in London, the time every date the portal shows is in (the
    database hands aggregates back in UTC: 00:30 on 1 June BST is 23:30 on 31 May there)."""
    return timezone.localtime(value).strftime("%Y-%m") if value else "unknown"


def _month_name(month: str) -> str:
    """"2026-11" -> "November 2026" (anything else as it is)."""
    try:
        return date.fromisoformat(f"{month}-01").strftime("%B %Y")
    except ValueError:
        return month


def compute_dashboard() -> dict:
    covid, sets, seen = _covid_status(), _patient_sets(), _first_seen()
    return {
        "computed_at": timezone.now().isoformat(timespec="seconds"),
        "studies_by_centre": _studies_over_time("site__code"),
        "studies_by_modality": _studies_by_modality(),
        "patients_by_centre": _patients_by_centre(),
        "patients_by_status": _patients_over_time(seen, lambda p: covid.get(p, "unknown")),
        "patients_by_set": _patients_over_time(seen, lambda p: sets.get(p, "unassigned")),
        "demographics": _demographics(seen),
        "centres": _centres(),
        "completeness": _completeness(),
    }


def _cumulative(per_month: dict[str, Counter]) -> dict:
    """{series: [[month, cumulative count], ...]} from {month: Counter(series -> new)}, and
    the month's name when all arrived in one (a line of one point is a lone dot)."""
    months = sorted(per_month)
    series = sorted({s for c in per_month.values() for s in c})
    out = {}
    for name in series:
        total, points = 0, []
        for month in months:
            total += per_month[month].get(name, 0)
            points.append([month, total])
        out[name] = points
    return {"months": months, "series": out,
            "only_month": _month_name(months[0]) if len(months) == 1 else None}


def _studies_over_time(field: str) -> dict:
    """Studies by the month their first object arrived, per value of ``field`` in the study's
    deciding row: its first image object, or its first object while it has no image (the rule
    of the summary's study counts: a study whose images say CT then MR counts once, in both, as
    CT; one whose presentation state came before its DX image, as X-ray)."""
    per_month: dict[str, Counter] = defaultdict(Counter)
    Image = image_model()
    not_images = non_image_modalities()
    same_study = Image.objects.filter(study_uid=OuterRef("study_uid"))
    first_row = same_study.order_by("pk").values(field)[:1]
    not_an_image = Case(When(modality__in=not_images, then=Value(1)), default=Value(0))
    first_image = same_study.order_by(not_an_image, "pk").values(field)[:1]
    # Only a study with other objects than images needs its rows sorted by kind.
    deciding = Case(When(study_uid__in=Image.objects.filter(modality__in=not_images)
                         .values("study_uid"), then=Subquery(first_image)),
                    default=Subquery(first_row))
    rows = Image.objects.values("study_uid").annotate(first=Min("received_at"), key=deciding)
    for row in rows.iterator(chunk_size=5000):
        per_month[_month(row["first"])][row["key"] or "unknown"] += 1
    return _cumulative(per_month)


def _studies_by_modality() -> dict:
    labels = {"xray": "X-ray", "mri": "MRI", "ct": "CT"}
    categories = modality_categories()
    raw = _studies_over_time("modality")
    merged: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for modality, points in raw["series"].items():
        label = labels.get(categories.get(modality.upper(), ""), f"Other ({modality})")
        for month, total in points:
            merged[label][month] += total
    return {"months": raw["months"], "only_month": raw["only_month"],
            "series": {k: [[m, v[m]] for m in raw["months"]] for k, v in sorted(merged.items())}}


def _patients_by_centre() -> dict:
    """Patients by the month each centre first sent them (an image or a clinical record): a
    patient two centres sent counts once in each centre's line, as in the centres table."""
    first: dict[tuple[str, str], object] = {}
    sources = (image_model().objects.values("pseudonym", "site__code").annotate(first=Min("received_at")),
               clinical_model().objects.values("pseudonym", "site__code").annotate(first=Min("created")))
    for rows in sources:
        for row in rows.iterator(chunk_size=5000):
            key = (row["pseudonym"], row["site__code"] or "unknown")
            seen = first.get(key)
            if seen is None or (row["first"] and row["first"] < seen):
                first[key] = row["first"]
    per_month: dict[str, Counter] = defaultdict(Counter)
    for (_, centre), at in first.items():
        per_month[_month(at)][centre] += 1
    return _cumulative(per_month)


def _first_seen() -> dict[str, object]:
    """Every patient (the summary's total: images or clinical records) and when first seen."""
    first: dict[str, object] = {}
    images = image_model().objects.values("pseudonym").annotate(first=Min("received_at"))
    for row in images.iterator(chunk_size=5000):
        first[row["pseudonym"]] = row["first"]
    clinical = clinical_model().objects.values("pseudonym").annotate(first=Min("created"))
    for row in clinical.iterator(chunk_size=5000):
        seen = first.get(row["pseudonym"])
        if seen is None or (row["first"] and row["first"] < seen):
            first[row["pseudonym"]] = row["first"]
    return first


def _patients_over_time(first: dict[str, object], classify) -> dict:
    """Patients by the month they were first seen (first image or clinical record), classified
    by ``classify(pseudonym)``."""
    per_month: dict[str, Counter] = defaultdict(Counter)
    for pseudonym, at in first.items():
        per_month[_month(at)][classify(pseudonym)] += 1
    return _cumulative(per_month)


def _patient_sets() -> dict[str, str]:
    """Each patient's set as the warehouse assigned it (``PatientSet``): a patient with clinical
    records only, or whose images were all removed, has one too (their clinical JSON is in it)."""
    rows = apps.get_model("warehouse", "PatientSet").objects.values_list("pseudonym", "set_name")
    return dict(rows.iterator(chunk_size=5000))


def _covid_status() -> dict[str, str]:
    """positive if any positive-template record or positive swab, negative if only negative."""
    status: dict[str, str] = {}
    rows = clinical_model().objects.values_list("pseudonym", "kind", "cleaned__any_positive_swab")
    for pseudonym, kind, positive_swab in rows.iterator(chunk_size=5000):
        # JSON true may come back as True or 1, depending on the database.
        if kind == "positive" or positive_swab in (True, "true"):
            status[pseudonym] = "positive"
        elif kind == "negative":
            status.setdefault(pseudonym, "negative")
    return status


def _demographics(patients) -> dict:
    """5-year age bands and sex of every patient (the most recently updated record's value),
    so that the figures add up to the summary's total: a patient no record gives a sex is
    ``NOT_RECORDED``, one without an age is counted in ``age_unknown``. Every band from 0 to
    the oldest is listed, an empty one as 0."""
    ages: dict[str, object] = {}
    sexes: dict[str, object] = {}
    rows = (clinical_model().objects.exclude(kind="negative").order_by("updated")
            .values_list("pseudonym", "cleaned__age", "cleaned__sex"))
    for pseudonym, age, sex in rows.iterator(chunk_size=5000):
        if age is not None:
            ages[pseudonym] = age
        if sex:
            sexes[pseudonym] = sex
    bands: Counter = Counter()
    for age in ages.values():
        try:
            low = int(float(age)) // AGE_BIN * AGE_BIN
        except (TypeError, ValueError):
            continue
        bands[low] += 1
    everyone = {*patients, *sexes, *ages}
    sex = Counter(str(sexes[p]) if p in sexes else NOT_RECORDED for p in everyone)
    unknown = sex.pop(NOT_RECORDED, 0)
    return {
        "patients": len(everyone),
        "age_bands": [[f"{low}-{low + AGE_BIN - 1}", bands[low]]
                      for low in range(0, max(bands, default=-1) + 1, AGE_BIN)],
        "age_unknown": len(everyone) - sum(bands.values()),
        "sex": [[s, n] for s, n in sorted(sex.items())] + ([[NOT_RECORDED, unknown]] if unknown else []),
    }


def _centres() -> list[dict]:
    """One row per site: first and latest submission, patients, studies, images, storage."""
    from nccid.accounts.models import Site

    images = {r["site_id"]: r for r in image_model().objects.values("site_id").annotate(
        first=Min("received_at"), last=Max("received_at"), studies=Count("study_uid", distinct=True),
        images=Count("pk"), bytes=Sum("size"))}
    clinical = {r["site_id"]: r for r in clinical_model().objects.values("site_id").annotate(
        first=Min("created"), last=Max("updated"), records=Count("pk"))}
    patients = _patients_per_site()
    out = []
    for site in Site.objects.order_by("code"):
        i, c = images.get(site.pk, {}), clinical.get(site.pk, {})
        if not i and not c:
            continue
        firsts = [d for d in (i.get("first"), c.get("first")) if d]
        lasts = [d for d in (i.get("last"), c.get("last")) if d]
        out.append({
            "code": site.code, "name": site.name,
            "first": min(firsts).isoformat() if firsts else None,
            "last": max(lasts).isoformat() if lasts else None,
            "patients": patients.get(site.pk, 0), "studies": i.get("studies", 0),
            "images": i.get("images", 0), "bytes": i.get("bytes") or 0,
            "clinical_records": c.get("records", 0),
        })
    return out


def _patients_per_site() -> dict[int, int]:
    seen: dict[int, set] = defaultdict(set)
    for model in (image_model(), clinical_model()):
        pairs = model.objects.values_list("site_id", "pseudonym").distinct()
        for site_id, pseudonym in pairs.iterator(chunk_size=5000):
            seen[site_id].add(pseudonym)
    return {site_id: len(p) for site_id, p in seen.items()}


def _completeness() -> dict:
    """Percentage of records with a usable value, per (kind, field) and centre."""
    filled: dict[tuple, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    rows = clinical_model().objects.values_list("site__code", "kind", "cleaned")
    for site, kind, cleaned in rows.iterator(chunk_size=2000):
        totals[(site, kind)] += 1
        for field in COMPLETENESS_FIELDS.get(kind, []):
            value = (cleaned or {}).get(field)
            if value not in (None, "", []):
                filled[(site, kind)][field] += 1
    sites = sorted({s for s, _ in totals})
    table = []
    for kind, fields in COMPLETENESS_FIELDS.items():
        for field in fields:
            cells = []
            for site in sites:
                n = totals.get((site, kind), 0)
                cells.append(None if not n else round(100 * filled[(site, kind)][field] / n, 1))
            if any(c is not None for c in cells):
                table.append({"kind": kind, "field": field, "cells": cells})
    return {"sites": sites, "rows": table}


# ---------------------------------------------------------------- charts (SVG)

def chart_svg(name: str) -> str | None:
    """The SVG of one chart, drawn once per dashboard version in this process."""
    if name not in CHARTS:
        return None
    board = get_dashboard()
    with _lock:
        cached = _memo["svgs"].get(name)
    if cached is None:
        cached = _draw(name, board)
        with _lock:
            _memo["svgs"][name] = cached
    return cached


def _draw(name: str, board: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    title = CHARTS[name]
    if name.startswith(("studies-", "patients-")):
        key = name.replace("-", "_")
        _lines(ax, board[key])
        ax.set_ylabel("cumulative count")
    elif name == "age":
        bands = board["demographics"]["age_bands"]
        ax.bar([b for b, _ in bands], [n for _, n in bands], color="#005eb8")
        ax.set_xlabel("age (years)")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    elif name == "sex":
        sexes = board["demographics"]["sex"]
        ax.barh([s for s, _ in sexes], [n for _, n in sexes], color="#005eb8")
        ax.invert_yaxis()  # top to bottom in the table's order, "Not recorded" last
        ax.set_xlabel("patients")
    elif name == "completeness":
        _heatmap(fig, ax, board["completeness"])
    ax.set_title(title, loc="left", fontsize=11)
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


# Each series its own marker and line style, markers smaller series by series: centres that
# sent the same numbers draw on top of each other, and every one of them stays visible.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", ":", "-.")


def _headroom(ax, values) -> None:
    """Counts from zero (an axis from zero does not magnify small differences), with room above
    the highest so that its marker or label is not cut by the frame."""
    peak = max(values, default=0)
    ax.set_ylim(0, max(peak * 1.12, peak + 1))


def _lines(ax, data: dict) -> None:
    if len(data["months"]) == 1:
        _one_month(ax, data)
        return
    months = data["months"]
    x = list(range(len(months)))
    for index, (label, points) in enumerate(data["series"].items()):
        ax.plot(x, [v for _, v in points], label=label, marker=MARKERS[index % len(MARKERS)],
                markersize=max(3.0, 8.0 - 1.5 * index), linestyle=LINE_STYLES[index % len(LINE_STYLES)])
    step = max(1, len(months) // 12)
    ax.set_xticks(x[::step], months[::step], rotation=45, fontsize=7)
    _headroom(ax, [v for points in data["series"].values() for _, v in points])
    if data["series"]:
        ax.legend(fontsize=7, loc="upper left", ncols=2)
    ax.grid(alpha=0.3)


def _one_month(ax, data: dict) -> None:
    """All in one month: a bar per series, each with its count, the month under the axis."""
    names = list(data["series"])
    counts = [points[-1][1] for points in data["series"].values()]
    bars = ax.bar(names, counts, color=[f"C{i}" for i in range(len(names))])
    ax.bar_label(bars, fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(f"all in {data.get('only_month') or _month_name(data['months'][0])}")
    _headroom(ax, counts)
    ax.grid(alpha=0.3, axis="y")


def _heatmap(fig, ax, data: dict) -> None:
    rows = data["rows"]
    if not rows:
        ax.text(0.5, 0.5, "no clinical records yet", ha="center", va="center")
        return
    fig.set_size_inches(8, max(3.0, 0.22 * len(rows) + 1.2))
    values = [[-1 if c is None else c for c in r["cells"]] for r in rows]
    image = ax.imshow(values, aspect="auto", cmap="Blues", vmin=0, vmax=100)
    ax.set_yticks(range(len(rows)), [f'{r["kind"]}: {r["field"]}' for r in rows], fontsize=7)
    ax.set_xticks(range(len(data["sites"])), data["sites"], fontsize=7, rotation=45)
    fig.colorbar(image, ax=ax, label="% complete")
