"""A site confirming a one-row sheet must not learn from the national figures whether another
site had sent that patient: everyone but data managers and administrators is shown the
national counts of patients and studies rounded to the nearest 5, and an uploader their own
site's figures exactly, as their uploads arrive. Data managers keep exact live figures."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.accounts.models import ApiToken
from nccid.portal import summary

from .figures_factories import add_clinical, add_images, pseudonym

pytestmark = pytest.mark.django_db

NATIONAL = ("patients_with_images", "total_patients", "studies_xray", "studies_mri", "studies_ct",
            "studies_other", "images")
ELSEWHERE = pseudonym(50)  # a patient only the other site has sent


@pytest.fixture
def figures(client, site, other_site):
    """The site's 10 patients (5 with an X-ray study each) and the other site's one patient
    with a CT study: no figure one away from a rounding boundary (11 patients shown as 10, 6
    with images as 5). -> figures(user): /api/summary as the user reads it."""
    for n in range(1, 11):
        add_clinical(site, pseudonym(n))
    for n in range(1, 6):
        add_images(site, pseudonym(n), str(n), "DX")
    add_clinical(other_site, ELSEWHERE)
    add_images(other_site, ELSEWHERE, "50", "CT")

    def read(user) -> dict:
        summary.forget()
        token = ApiToken.issue(user, "job")[1]
        return client.get("/api/summary", HTTP_AUTHORIZATION=f"Bearer {token}").json()

    return read


@pytest.mark.parametrize("already_sent", [ELSEWHERE, pseudonym(60)], ids=["known", "unknown"])
def test_a_one_row_sheet_moves_the_data_managers_total_not_an_uploaders(
        site, make_user, figures, already_sent):
    uploader, manager = make_user("uploader", site), make_user("data-manager")
    assert figures(manager)["total_patients"] == 11 and figures(uploader)["total_patients"] == 10
    add_clinical(site, already_sent)  # the probe: known elsewhere, or nobody's
    moved = 0 if already_sent == ELSEWHERE else 1
    assert figures(manager)["total_patients"] == 11 + moved
    assert figures(uploader)["total_patients"] == 10  # the same whichever it was
    assert figures(uploader)["your_site"] == {"patients": 11, "studies": 5}  # exact, live


def test_one_patient_of_another_site_moves_no_rounded_figure(site, other_site, make_user,
                                                             figures):
    uploader, researcher = make_user("uploader", site), make_user("researcher")
    before = {who: figures(who) for who in (uploader, researcher)}
    exact = figures(make_user("admin"))
    add_images(other_site, pseudonym(70), "70", "MR")  # a new patient, a new study
    after = {who: figures(who) for who in (uploader, researcher)}
    now = figures(make_user("admin"))
    for who in before:
        assert {f: after[who][f] for f in NATIONAL} == {f: before[who][f] for f in NATIONAL}
        assert after[who]["rounded_to"] == 5
    assert after[researcher]["your_site"] is None
    assert [now[f] - exact[f] for f in ("patients_with_images", "total_patients", "studies_mri",
                                       "images")] == [1, 1, 1, 1]
    assert (now["rounded_to"], now["your_site"]) == (1, None)


def test_the_summary_page_says_it_rounds_and_shows_the_uploaders_site_exactly(
        client, site, make_user, figures):
    client.force_login(make_user("uploader", site))
    html = client.get(reverse("figures:summary")).content.decode()
    assert "rounded to the nearest 5" in html
    assert 'id="your-site-patients">10</td>' in html and 'id="your-site-studies">5</td>' in html
    client.force_login(make_user("data-manager"))
    html = client.get(reverse("figures:summary")).content.decode()
    assert "rounded to the nearest" not in html and 'id="your-site-table"' not in html
    assert ">11</td>" in html[html.index('id="summary-table"'):]


def test_each_sites_own_figures_are_counted_incrementally_as_from_scratch(site, other_site):
    add_images(site, pseudonym(1), "1", "DX", count=2)
    add_clinical(site, pseudonym(1))
    first = summary.get_summary(max_age=0)
    add_images(other_site, pseudonym(1), "1", "DX")     # the same study, sent by the other site
    add_clinical(other_site, pseudonym(2))
    add_images(site, pseudonym(3), "3", "CT")
    add_clinical(site, pseudonym(3))
    later = summary.get_summary(max_age=0)
    assert later.version != first.version and later == summary.recount()
    assert later.site(site.pk) == summary.SiteFigures(patients=2, studies=2)
    assert later.site(other_site.pk) == summary.SiteFigures(patients=2, studies=1)
