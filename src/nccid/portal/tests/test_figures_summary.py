"""The summary table: counted incrementally, always equal to a count from scratch."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.portal import summary
from nccid.portal.models import FigureState

from .figures_factories import add_clinical, add_images, pseudonym

pytestmark = pytest.mark.django_db


def _table(figures) -> dict:
    return dict(figures.rows())


def test_summary_counts_patients_once_and_studies_by_modality(site, other_site):
    p1, p2, p3, p4 = (pseudonym(i) for i in range(1, 5))
    add_images(site, p1, "11", "DX", count=2)          # one X-ray study, two images
    add_images(site, p1, "12", "CT", count=3)          # same patient, a CT study
    add_images(other_site, p1, "13", "CR")             # same patient at another centre
    add_images(other_site, p2, "21", "MR", count=2)
    add_images(other_site, p2, "22", "US")             # counted in no published column
    add_clinical(site, p1)                             # has images too
    add_clinical(site, p3, "negative")                 # clinical data only
    add_clinical(other_site, p3, "isaric")             # same patient, another centre
    add_clinical(other_site, p4)
    table = _table(summary.get_summary(max_age=0))
    assert table == {
        "Number of centres with data": 2,
        "Patients with images": 2,
        "Total patients (studies + clinical data)": 4,
        "Studies received (X-ray)": 2,
        "Studies received (MRI)": 1,
        "Studies received (CT)": 1,
    }
    assert summary.get_summary(max_age=0).studies_other == 1


def test_new_rows_are_added_to_the_saved_counts_and_match_a_recount(site, other_site):
    add_images(site, pseudonym(1), "1", "DX")
    first = summary.get_summary(max_age=0)
    state = FigureState.objects.get(name=summary.SUMMARY)
    assert (state.image_hwm, first.patients_with_images) == (first.version[0], 1)
    # Batches that repeat earlier patients and studies, and bring new ones.
    add_images(site, pseudonym(1), "1", "DX")
    add_images(other_site, pseudonym(2), "2", "CT", count=2)
    add_clinical(site, pseudonym(3))
    add_clinical(site, pseudonym(2))
    second = summary.get_summary(max_age=0)
    assert second.version != first.version
    assert FigureState.objects.get(name=summary.SUMMARY).image_hwm == second.version[0]
    add_images(site, pseudonym(3), "3", "MR")
    add_images(site, pseudonym(4), "1", "DX")  # an existing study (a second patient is odd but possible)
    third = summary.get_summary(max_age=0)
    assert third == summary.recount()
    assert _table(third)["Patients with images"] == 4
    assert _table(third)["Total patients (studies + clinical data)"] == 4
    assert _table(third)["Studies received (X-ray)"] == 1


def test_the_increment_reads_only_rows_added_since_the_saved_state(site):
    add_images(site, pseudonym(1), "1", "DX")
    summary.get_summary(max_age=0)
    # Corrupt the saved counts: if the next call recounted everything, it would not carry this.
    state = FigureState.objects.get(name=summary.SUMMARY)
    state.data["patients_with_images"] = 100
    state.save()
    summary.forget()
    add_images(site, pseudonym(2), "2", "DX")
    assert summary.get_summary(max_age=0).patients_with_images == 101


def test_a_page_view_with_unchanged_data_only_probes(site, django_assert_max_num_queries):
    add_images(site, pseudonym(1), "1", "DX")
    summary.get_summary(max_age=0)
    with django_assert_max_num_queries(3):  # max(image id), max(clinical id), generation
        assert summary.get_summary(max_age=0).patients_with_images == 1
    with django_assert_max_num_queries(0):
        summary.get_summary(max_age=60)


def test_deleting_rows_forces_a_recount(site):
    from nccid.warehouse.models import ImageRecord

    add_images(site, pseudonym(1), "1", "DX")
    add_images(site, pseudonym(2), "2", "CT")
    assert summary.get_summary(max_age=0).patients_with_images == 2
    ImageRecord.objects.filter(pseudonym=pseudonym(2)).delete()
    after = summary.get_summary(max_age=0)
    assert (after.patients_with_images, after.studies_ct) == (1, 0)
    assert after == summary.recount()


@pytest.mark.parametrize("role", ["uploader", "data-manager", "researcher", "admin"])
def test_every_signed_in_role_sees_the_national_table(client, site, other_site, make_user, role):
    add_images(other_site, pseudonym(1), "1", "CT", count=2)
    add_clinical(other_site, pseudonym(2))
    user = make_user(role, site=site if role == "uploader" else None)
    client.force_login(user)
    page = client.get(reverse("figures:summary"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Studies received (CT)" in html and "Total patients (studies + clinical data)" in html
    table = html[html.index('id="summary-table"'):]
    if role in ("data-manager", "admin"):
        assert ">2</td>" in table and ">1</td>" in table  # patients 2, CT studies 1
    else:  # rounded to the nearest 5 (the centre exact)
        assert ">2</td>" not in table and ">0</td>" in table and ">1</td>" in table
    assert pseudonym(1) not in html  # figures only, never a patient


def test_signed_out_visitors_are_sent_to_the_login_page(client):
    page = client.get(reverse("figures:summary"))
    assert page.status_code == 302 and reverse("portal:login") in page["Location"]
