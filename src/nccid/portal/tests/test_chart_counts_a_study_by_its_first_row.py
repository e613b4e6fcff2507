"""The studies-by-modality chart files a study under the modality of its first stored row, the
same rule as the summary: a study whose first image is MR and a later one CT counts as MRI in
both, whatever the alphabetical order of the codes."""

from __future__ import annotations

import pytest

from nccid.portal import charts, summary
from nccid.portal.tests.figures_factories import add_images, pseudonym

pytestmark = pytest.mark.django_db


def _latest(chart: dict) -> dict[str, int]:
    return {name: points[-1][1] for name, points in chart["series"].items() if points[-1][1]}


def test_a_study_first_stored_as_mr_then_ct_counts_as_mri_in_chart_and_summary(site):
    add_images(site, pseudonym(1), "4", "MR")
    add_images(site, pseudonym(1), "4", "CT")  # a later image of the same study
    add_images(site, pseudonym(2), "5", "CT")
    assert _latest(charts.compute_dashboard()["studies_by_modality"]) == {"MRI": 1, "CT": 1}
    figures = summary.get_summary(max_age=0)
    assert (figures.studies_mri, figures.studies_ct) == (1, 1)
