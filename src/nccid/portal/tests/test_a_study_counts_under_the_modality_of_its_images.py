"""A study counts under the modality of its image objects, whatever came first: a presentation
state (PR), key object selection (KO) or report (SR) stored before the study's DX image left
the study under "Other (PR)" in the summary and the dashboard's chart, where DX then PR gave
X-ray. An object that is not an image decides only while the study has no image."""

from __future__ import annotations

import pytest

from nccid.portal import charts, summary
from nccid.portal.tests.figures_factories import add_images, pseudonym

pytestmark = pytest.mark.django_db


def _studies(figures: summary.Summary) -> tuple[int, int, int, int]:
    return figures.studies_xray, figures.studies_mri, figures.studies_ct, figures.studies_other


def _chart() -> dict[str, int]:
    chart = charts.compute_dashboard()["studies_by_modality"]
    return {name: points[-1][1] for name, points in chart["series"].items() if points[-1][1]}


@pytest.mark.parametrize("order", [("PR", "DX"), ("DX", "PR"), ("KO", "SR", "CR")])
def test_either_order_counts_the_study_as_x_ray(site, order):
    for modality in order:
        add_images(site, pseudonym(1), "5", modality)
        summary.get_summary(max_age=0)  # counted after each object: the incremental path
    assert _studies(summary.get_summary(max_age=0)) == (1, 0, 0, 0)
    assert _studies(summary.recount()) == (1, 0, 0, 0)
    assert _chart() == {"X-ray": 1}


def test_a_study_of_objects_that_are_not_images_counts_under_its_first(site):
    add_images(site, pseudonym(1), "6", "SR")
    add_images(site, pseudonym(1), "6", "PR")
    assert _studies(summary.get_summary(max_age=0)) == (0, 0, 0, 1)
    assert _chart() == {"Other (SR)": 1}


def test_new_and_old_studies_gaining_images_in_one_batch_match_a_recount(site):
    add_images(site, pseudonym(1), "7", "PR")      # counted as Other for now
    add_images(site, pseudonym(2), "8", "CT")
    assert _studies(summary.get_summary(max_age=0)) == (0, 0, 1, 1)
    add_images(site, pseudonym(1), "7", "PR")      # then, in one batch of new rows:
    add_images(site, pseudonym(1), "7", "MR")      # the old study gains its first image,
    add_images(site, pseudonym(1), "7", "CT")      # and a second one (MR decides)
    add_images(site, pseudonym(3), "9", "KO")      # a new study, its report first
    add_images(site, pseudonym(3), "9", "DX")
    add_images(site, pseudonym(4), "10", "PR")     # and one of no image at all
    served = summary.get_summary(max_age=0)
    assert _studies(served) == (1, 1, 1, 1)
    assert _studies(served) == _studies(summary.recount())
    assert _chart() == {"X-ray": 1, "MRI": 1, "CT": 1, "Other (PR)": 1}


def test_counts_saved_under_the_first_row_rule_are_counted_again(site):
    from nccid.portal.models import FigureState

    add_images(site, pseudonym(1), "11", "PR")
    add_images(site, pseudonym(1), "11", "DX")
    summary.get_summary(max_age=0)
    state = FigureState.objects.get(name=summary.SUMMARY)
    saved = dict(state.data, studies={"xray": 0, "mri": 0, "ct": 0, "other": 1})
    del saved["studies_by"]  # as a release before this rule saved them
    FigureState.objects.filter(pk=state.pk).update(data=saved)
    summary.forget()
    assert _studies(summary.get_summary(max_age=0)) == (1, 0, 0, 0)
