"""Modelling data from cleaned clinical records (pure: no Django).

Weekly counts by site of positive swabs, admissions, ITU admissions, intubations and deaths,
and the intervals between them (median and IQR in days). Each patient counts once per event:
their earliest date for it, at the site whose record gives that date. An ITU admission,
intubation or death counts only when its yes/no field says Yes (ISARIC deaths: outcome Death).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .cohort import boolean_spellings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# event -> the cleaned field that dates it (data, not branches)
EVENTS = {
    "positive_swabs": "date_of_positive_covid_swab",
    "admissions": "date_of_admission",
    "itu_admissions": "date_of_itu_admission",
    "intubations": "date_of_intubation",
    "deaths": "date_of_death",
}
# event -> the positive template's yes/no field that must say Yes for its date to count: a
# record may hold a date beside "No" (the date of death of a patient who did not die is a
# site's slip), and a date beside a blank answer is not taken as a Yes either.
CONFIRMED_BY = {
    "itu_admissions": "itu_admission",
    "intubations": "intubation",
    "deaths": "death",
}
INTERVALS = (
    ("swab_to_admission", "positive_swabs", "admissions"),
    ("admission_to_itu", "admissions", "itu_admissions"),
    ("admission_to_death", "admissions", "deaths"),
)


@dataclass(frozen=True)
class Record:
    pseudonym: str
    site: str
    kind: str
    cleaned: dict


def parse_cleaned(value: str | dict | None) -> dict:
    if isinstance(value, dict):
        return value
    return json.loads(value) if value else {}


def _date(value) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _says_yes(value) -> bool:
    """Yes in any spelling a clinical test reads as Yes (``data/clinical_values.toml``)."""
    return str(value).strip().lower() in boolean_spellings()["yes"]


def event_dates(record: Record) -> dict[str, date]:
    """The dated events one record tells of (a negative template's positive swabs; ISARIC deaths)."""
    c = record.cleaned
    found = {event: d for event, name in EVENTS.items() if (d := _date(c.get(name)))
             and (event not in CONFIRMED_BY or _says_yes(c.get(CONFIRMED_BY[event])))}
    positives = [d for s in c.get("swabs") or [] if str(s.get("status", "")).lower() == "positive"
                 and (d := _date(s.get("date")))]
    if positives:
        found["positive_swabs"] = min([*positives, *filter(None, [found.get("positive_swabs")])])
    if str(c.get("outcome", "")).lower() == "death" and (d := _date(c.get("date_of_outcome"))):
        found.setdefault("deaths", d)
    return found


def patient_events(records: list[Record]) -> dict[str, dict[str, tuple[date, str]]]:
    """Pseudonym -> event -> (earliest date, site of the record giving it)."""
    out: dict[str, dict[str, tuple[date, str]]] = {}
    for record in records:
        mine = out.setdefault(record.pseudonym, {})
        for event, when in event_dates(record).items():
            if event not in mine or (when, record.site) < mine[event]:
                mine[event] = (when, record.site)
    return out


def week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())  # ISO weeks start on Monday


def weekly_counts(records: list[Record]) -> pd.DataFrame:
    rows = [(week_start(when), site, event)
            for events in patient_events(records).values() for event, (when, site) in events.items()]
    columns = ["week_start", "site", *EVENTS]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows, columns=["week_start", "site", "event"])
    table = (frame.groupby(["week_start", "site", "event"]).size().unstack("event", fill_value=0)
             .reindex(columns=list(EVENTS), fill_value=0).reset_index())
    table.columns.name = None
    return _with_quiet_weeks(table[columns]).sort_values(["week_start", "site"]).reset_index(drop=True)


def _with_quiet_weeks(table: pd.DataFrame) -> pd.DataFrame:
    """A row of zeros for every week between a site's first and last with events: a week left
    out reads as missing data to a model, and a plot joined the weeks either side of it.
    Before a site's first week and after its last nothing is known, so nothing is added."""
    spans = table.groupby("site")["week_start"].agg(["min", "max"])
    every = pd.MultiIndex.from_tuples(
        [(first + timedelta(weeks=n), site) for site, (first, last) in spans.iterrows()
         for n in range((last - first).days // 7 + 1)], names=["week_start", "site"])
    return (table.set_index(["week_start", "site"]).reindex(every, fill_value=0)
            .astype(int).reset_index())


def intervals(records: list[Record]) -> pd.DataFrame:
    events = patient_events(records)
    rows = []
    for name, start, end in INTERVALS:
        days = np.array([(e[end][0] - e[start][0]).days for e in events.values()
                         if start in e and end in e], dtype=float)
        if len(days):
            q1, median, q3 = np.percentile(days, [25, 50, 75])
            rows.append((name, len(days), median, q1, q3, days.min(), days.max()))
        else:
            rows.append((name, 0, None, None, None, None, None))
    return pd.DataFrame(rows, columns=["interval", "n", "median_days", "q1_days", "q3_days",
                                       "min_days", "max_days"])


def plot_weekly(table: pd.DataFrame, path: Path) -> Figure:
    """One panel per event, a line per site over its weeks (quiet weeks drawn at zero)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.2 * len(EVENTS)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(EVENTS), 1, sharex=True, squeeze=False)[:, 0]
    for ax, event in zip(axes, EVENTS, strict=True):
        for site, part in table.groupby("site"):
            ax.plot(pd.to_datetime(part["week_start"]), part[event], marker="o", ms=3, label=site)
        ax.set_ylabel(event.replace("_", " "))
    if len(table):
        axes[0].legend(title="site", fontsize="small", ncols=4)
    axes[-1].set_xlabel("week starting (Monday)")
    fig.suptitle("Weekly counts by site")
    fig.savefig(path, format="png")
    return fig


def write_outputs(records: list[Record], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    table = weekly_counts(records)
    paths = [directory / "weekly_counts.csv", directory / "intervals.csv",
             directory / "weekly_counts.png"]
    table.to_csv(paths[0], index=False)
    intervals(records).to_csv(paths[1], index=False)
    plot_weekly(table, paths[2])
    return paths
