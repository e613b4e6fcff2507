"""The dashboard's charts file arrivals under the month they arrived in London, the time the
rest of the portal shows: a study and a clinical record that arrive at 00:30 on 1 June (BST,
23:30 on 31 May in UTC) count in June, as the Centres table's "1 Jun 2026" says, not in May."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from nccid.clinical.models import ClinicalRecord
from nccid.portal import charts

from .figures_factories import add_clinical, add_images, pseudonym

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
JUNE_FIRST_AFTER_MIDNIGHT = datetime(2026, 6, 1, 0, 30, tzinfo=LONDON)  # 31 May 23:30 UTC


@pytest.fixture
def arrived_just_after_midnight(site):
    add_images(site, pseudonym(1), "1", when=JUNE_FIRST_AFTER_MIDNIGHT)
    add_clinical(site, pseudonym(2), "positive", age=40, sex="Female")
    ClinicalRecord.objects.update(created=JUNE_FIRST_AFTER_MIDNIGHT, updated=JUNE_FIRST_AFTER_MIDNIGHT)


@pytest.mark.parametrize("chart", ["studies_by_centre", "studies_by_modality",
                                   "patients_by_status", "patients_by_set"])
def test_an_arrival_after_midnight_in_june_counts_in_june(arrived_just_after_midnight, chart):
    board = charts.compute_dashboard()
    assert board[chart]["months"] == ["2026-06"]
    assert board[chart]["only_month"] == "June 2026"


def test_the_centres_table_and_the_charts_agree(arrived_just_after_midnight):
    board = charts.compute_dashboard()
    first = datetime.fromisoformat(board["centres"][0]["first"]).astimezone(LONDON)
    assert first.strftime("%B %Y") == board["studies_by_centre"]["only_month"]
