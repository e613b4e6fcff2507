"""The dashboard's age and sex figures count every patient the summary counts (a patient with
images only, or on the negative template, which asks neither, is "not recorded"), age bands run
without gaps, and data that all arrived in one month are drawn as bars with their counts, not
as a lone dot, with room above the highest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from matplotlib.figure import Figure

from nccid.portal import charts, summary

from .figures_factories import add_clinical, add_images, pseudonym

pytestmark = pytest.mark.django_db

MARCH = datetime(2020, 3, 15, tzinfo=UTC)


@pytest.fixture
def patients(site):
    add_clinical(site, pseudonym(1), "positive", age=12, sex="Female")
    add_clinical(site, pseudonym(2), "isaric", age=31, sex="Male")
    add_clinical(site, pseudonym(3), "positive", age=33, sex=None)  # sex left blank
    add_clinical(site, pseudonym(4), "negative", swabs=[])  # the negative template asks no sex
    add_images(site, pseudonym(5), "5", when=MARCH)  # images only


def test_sex_counts_every_patient_with_those_not_recorded_last(patients):
    demographics = charts.compute_dashboard()["demographics"]
    assert demographics["sex"] == [["Female", 1], ["Male", 1], [charts.NOT_RECORDED, 3]]
    assert demographics["patients"] == summary.get_summary(max_age=0).total_patients == 5


def test_age_bands_run_from_zero_without_gaps(patients):
    demographics = charts.compute_dashboard()["demographics"]
    assert demographics["age_bands"] == [["0-4", 0], ["5-9", 0], ["10-14", 1], ["15-19", 0],
                                         ["20-24", 0], ["25-29", 0], ["30-34", 2]]
    assert demographics["age_unknown"] == 2  # pseudonyms 4 and 5, of the 5 patients


def test_series_of_one_month_name_it(patients):
    board = charts.compute_dashboard()
    assert board["studies_by_centre"]["only_month"] == "March 2020"
    assert board["patients_by_status"]["only_month"] == board["patients_by_set"]["only_month"]


def test_one_month_is_drawn_as_bars_with_room_above_the_highest():
    ax = Figure().add_subplot()
    charts._lines(ax, {"months": ["2026-11"], "only_month": "November 2026",
                       "series": {"NTH": [["2026-11", 45]], "RTH": [["2026-11", 48]]}})
    assert [round(bar.get_height()) for bar in ax.patches] == [45, 48]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["NTH", "RTH"]
    assert "November 2026" in ax.get_xlabel()
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 48 * 1.1


def test_line_charts_leave_room_above_the_highest_marker():
    ax = Figure().add_subplot()
    charts._lines(ax, {"months": ["2020-03", "2020-04"],
                       "series": {"A": [["2020-03", 40], ["2020-04", 45]],
                                  "B": [["2020-03", 44], ["2020-04", 48]]}})
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 48 * 1.1
