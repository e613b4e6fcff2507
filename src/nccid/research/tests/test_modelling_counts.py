"""Weekly counts and intervals on a small fixture checked by hand."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from nccid.accounts.models import AuditEvent
from nccid.research.cohort import ScopeError
from nccid.research.modelling import Record, intervals, weekly_counts
from nccid.research.services import modelling_outputs

RECORDS = [
    # A: swab Mon 6 Apr, admitted Wed 8 Apr, ITU Sat 11 Apr, intubated Mon 13 Apr, died Mon 20 Apr
    Record("A", "RTEST", "positive", {
        "date_of_positive_covid_swab": "2020-04-06", "date_of_admission": "2020-04-08",
        "date_of_itu_admission": "2020-04-11", "date_of_intubation": "2020-04-13",
        "date_of_death": "2020-04-20", "itu_admission": "Yes", "intubation": "Yes", "death": "Yes"}),
    # A again at ISARIC, a later admission date: the earliest (RTEST, 8 Apr) wins, counted once.
    Record("A", "OTHER", "isaric", {"date_of_admission": "2020-04-09"}),
    # B: swab Sun 12 Apr, admitted Tue 14 Apr; no ITU, no death.
    Record("B", "RTEST", "positive", {"date_of_positive_covid_swab": "2020-04-12",
                                      "date_of_admission": "2020-04-14"}),
    # C: negative template with a positive swab on Thu 9 Apr at OTHER.
    Record("C", "OTHER", "negative", {"swabs": [{"date": "2020-04-02", "status": "Negative"},
                                                {"date": "2020-04-09", "status": "Positive"}]}),
    # D: ISARIC death on Fri 17 Apr after admission on Fri 10 Apr.
    Record("D", "OTHER", "isaric", {"date_of_admission": "2020-04-10", "outcome": "Death",
                                    "date_of_outcome": "2020-04-17"}),
]


def test_weekly_counts_by_site():
    table = weekly_counts(RECORDS)
    got = {(r.week_start, r.site): (r.positive_swabs, r.admissions, r.itu_admissions,
                                    r.intubations, r.deaths) for r in table.itertuples()}
    assert got == {
        (date(2020, 4, 6), "RTEST"): (2, 1, 1, 0, 0),    # A swab+adm+ITU, B swab (Sun 12th)
        (date(2020, 4, 6), "OTHER"): (1, 1, 0, 0, 0),    # C swab, D admission
        (date(2020, 4, 13), "RTEST"): (0, 1, 0, 1, 0),   # B admission, A intubation
        (date(2020, 4, 13), "OTHER"): (0, 0, 0, 0, 1),   # D death
        (date(2020, 4, 20), "RTEST"): (0, 0, 0, 0, 1),   # A death
    }


def test_intervals_median_and_iqr():
    table = intervals(RECORDS).set_index("interval")
    # swab->admission: A 2, B 2 ; admission->ITU: A 3 ; admission->death: A 12, D 7
    assert table.loc["swab_to_admission", "n"] == 2
    assert table.loc["swab_to_admission", "median_days"] == 2
    assert table.loc["admission_to_itu", "median_days"] == 3
    assert table.loc["admission_to_death", "n"] == 2
    assert table.loc["admission_to_death", "median_days"] == pytest.approx(9.5)
    assert table.loc["admission_to_death", "q1_days"] == pytest.approx(8.25)
    assert table.loc["admission_to_death", "q3_days"] == pytest.approx(10.75)


def test_itu_intubation_and_death_count_only_when_the_record_says_yes():
    """A date beside No (a site's slip) or beside a blank answer is no event; Yes in either
    spelling a clinical test reads (Yes, true) is."""
    dated = {"date_of_admission": "2020-04-08", "date_of_itu_admission": "2020-04-11",
             "date_of_intubation": "2020-04-13", "date_of_death": "2020-04-20"}
    answers = {"no": "No", "blank": None, "yes": "Yes", "true": "true"}
    records = [Record(name, "RTEST", "positive", {
        **dated, "itu_admission": answer, "intubation": answer, "death": answer})
        for name, answer in answers.items()]
    totals = weekly_counts(records)[["admissions", "itu_admissions", "intubations", "deaths"]].sum()
    assert totals.to_dict() == {"admissions": 4, "itu_admissions": 2, "intubations": 2, "deaths": 2}
    table = intervals(records).set_index("interval")
    assert table.loc["admission_to_death", "n"] == table.loc["admission_to_itu", "n"] == 2


def test_outputs_from_the_catalogue_are_training_only_and_audited(world, researcher, make_user, tmp_path):
    result = modelling_outputs(researcher, tmp_path / "m", world.source())
    assert result["records"] == sum(1 for c in world.clinical if c["set_name"] == "training")
    counts = pd.read_csv(tmp_path / "m" / "weekly_counts.csv")
    training = [c for c in world.clinical if c["set_name"] == "training"]
    assert counts["admissions"].sum() == sum(1 for c in training if c["cleaned"]["date_of_admission"])
    assert counts["deaths"].sum() == sum(1 for c in training if c["cleaned"]["date_of_death"]
                                         and c["cleaned"]["death"] == "Yes")
    assert (tmp_path / "m" / "weekly_counts.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "m" / "intervals.csv").exists()
    assert AuditEvent.objects.filter(action="research.modelling", username="rita").exists()
    with pytest.raises(ScopeError):
        modelling_outputs(make_user("uploader"), tmp_path / "n", world.source())


# RTEST: admissions in the weeks of 6 Apr and 27 Apr, none in the two weeks between.
# OTHER: one admission in the week of 13 Apr only.
GAPPED = [Record("E", "RTEST", "positive", {"date_of_admission": "2020-04-07"}),
          Record("F", "RTEST", "positive", {"date_of_admission": "2020-04-29"}),
          Record("G", "OTHER", "positive", {"date_of_admission": "2020-04-15"})]


def test_weeks_without_events_are_rows_of_zeros_between_a_sites_first_and_last_week():
    table = weekly_counts(GAPPED)
    rtest = table[table.site == "RTEST"]
    assert list(rtest.week_start) == [date(2020, 4, 6), date(2020, 4, 13), date(2020, 4, 20),
                                      date(2020, 4, 27)]
    assert list(rtest.admissions) == [1, 0, 0, 1]
    assert (rtest[["positive_swabs", "itu_admissions", "intubations", "deaths"]] == 0).all().all()
    # nothing is known of OTHER before or after its one week, so nothing is added there
    assert list(table[table.site == "OTHER"].week_start) == [date(2020, 4, 13)]
    assert list(table.week_start) == sorted(table.week_start)


def test_the_csv_and_the_plot_drop_to_zero_in_quiet_weeks(tmp_path):
    from nccid.research.modelling import plot_weekly, write_outputs

    write_outputs(GAPPED, tmp_path)
    csv = pd.read_csv(tmp_path / "weekly_counts.csv")
    assert list(csv[csv.site == "RTEST"].admissions) == [1, 0, 0, 1]
    figure = plot_weekly(weekly_counts(GAPPED), tmp_path / "again.png")
    panel = next(ax for ax in figure.axes if ax.get_ylabel() == "admissions")
    line = next(line for line in panel.get_lines() if line.get_label() == "RTEST")
    weeks = pd.to_datetime(pd.Series(line.get_xdata())).dt.date.tolist()
    assert weeks == list(csv[csv.site == "RTEST"].week_start.map(date.fromisoformat))
    assert list(line.get_ydata()) == [1, 0, 0, 1]
