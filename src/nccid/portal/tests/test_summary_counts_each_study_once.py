"""The summary counts a study once, in the category of the modality of its first stored row,
however many modality codes its images carry, and the incremental count always equals a
count from scratch."""

from __future__ import annotations

import pytest

from nccid.portal import summary
from nccid.portal.tests.figures_factories import add_images, pseudonym

pytestmark = pytest.mark.django_db


def _studies(figures: summary.Summary) -> tuple[int, int, int, int]:
    return figures.studies_xray, figures.studies_mri, figures.studies_ct, figures.studies_other


def test_an_x_ray_study_with_cr_and_dx_images_counts_once(site):
    add_images(site, pseudonym(1), "5", "CR")
    add_images(site, pseudonym(1), "5", "DX", count=2)
    assert _studies(summary.get_summary(max_age=0)) == (1, 0, 0, 0)
    assert _studies(summary.recount()) == (1, 0, 0, 0)


def test_a_study_that_later_gains_another_modality_keeps_its_first_category(site):
    add_images(site, pseudonym(1), "6", "CT")
    assert _studies(summary.get_summary(max_age=0)) == (0, 0, 1, 0)
    add_images(site, pseudonym(1), "6", "MR")  # a later image of the same study
    add_images(site, pseudonym(2), "7", "MR")  # and a new study
    add_images(site, pseudonym(2), "7", "CT")  # in the same batch of new rows
    incremental = summary.get_summary(max_age=0)
    assert _studies(incremental) == (0, 1, 1, 0)
    assert _studies(incremental) == _studies(summary.recount())
