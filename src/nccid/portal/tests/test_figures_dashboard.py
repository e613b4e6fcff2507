"""The data managers' dashboard: figures from the database, SVG charts with table alternatives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from nccid.portal import charts, summary

from .figures_factories import add_clinical, add_images, pseudonym

pytestmark = pytest.mark.django_db

MARCH, APRIL = datetime(2020, 3, 15, tzinfo=UTC), datetime(2020, 4, 10, tzinfo=UTC)


@pytest.fixture
def data(site, other_site):
    add_images(site, pseudonym(1), "1", "DX", count=2, when=MARCH, size=500)
    add_images(site, pseudonym(2), "2", "CT", count=3, when=APRIL, size=1000, set_name="validation")
    add_images(other_site, pseudonym(3), "3", "CR", when=APRIL, size=200)
    add_clinical(site, pseudonym(1), "positive", age=34, sex="Female", ethnicity="White")
    add_clinical(site, pseudonym(2), "negative", swabs=[], latest_swab_status="Negative",
                 any_positive_swab=False)
    add_clinical(other_site, pseudonym(3), "isaric", age=71, sex="Male")
    add_clinical(other_site, pseudonym(4), "positive", age=38, sex="Male", ethnicity=None)
    add_images(other_site, pseudonym(5), "5", "DX", when=APRIL)
    add_clinical(other_site, pseudonym(5), "negative", swabs=[], latest_swab_status="Positive",
                 any_positive_swab=True)  # a later positive swab on the negative template


def test_dashboard_figures_come_from_the_database(data, site, other_site):
    board = charts.get_dashboard(force=True)
    by_modality = board["studies_by_modality"]
    assert by_modality["months"] == ["2020-03", "2020-04"]
    assert by_modality["series"]["X-ray"] == [["2020-03", 1], ["2020-04", 3]]  # cumulative
    assert by_modality["series"]["CT"] == [["2020-03", 0], ["2020-04", 1]]
    assert board["studies_by_centre"]["series"][site.code][-1] == ["2020-04", 2]
    status_final = {k: v[-1][1] for k, v in board["patients_by_status"]["series"].items()}
    assert status_final == {"positive": 3, "negative": 1, "unknown": 1}
    set_final = {k: v[-1][1] for k, v in board["patients_by_set"]["series"].items()}
    assert set_final == {"training": 4, "validation": 1}  # pseudonym(4): clinical records only
    bands = dict(board["demographics"]["age_bands"])
    assert {band: n for band, n in bands.items() if n} == {"30-34": 1, "35-39": 1, "70-74": 1}
    assert list(bands)[0] == "0-4" and len(bands) == 15  # every band to the oldest, empty as 0
    assert dict(board["demographics"]["sex"]) == {"Female": 1, "Male": 2, charts.NOT_RECORDED: 2}
    centres = {c["code"]: c for c in board["centres"]}
    assert (centres[site.code]["patients"], centres[site.code]["studies"],
            centres[site.code]["images"], centres[site.code]["bytes"]) == (2, 2, 5, 4000)
    assert centres[other_site.code]["first"].startswith("2020-04-10")
    completeness = {(r["kind"], r["field"]): r["cells"] for r in board["completeness"]["rows"]}
    sites = board["completeness"]["sites"]
    assert completeness[("positive", "ethnicity")][sites.index(other_site.code)] == 0.0
    assert completeness[("positive", "age")][sites.index(site.code)] == 100.0


def test_patients_by_set_counts_each_patient_in_the_set_the_warehouse_gave_them(site):
    """Not the set of their image rows: a patient with clinical records only, or whose only
    study was removed, is in a set all the same (their clinical JSON is filed under it)."""
    from nccid.warehouse.models import ImageRecord

    add_images(site, pseudonym(1), "1", when=MARCH)
    add_clinical(site, pseudonym(2), "negative", set_name="validation")
    add_images(site, pseudonym(3), "3", when=MARCH, set_name="validation")
    add_clinical(site, pseudonym(3), "positive")
    ImageRecord.objects.filter(pseudonym=pseudonym(3)).delete()  # its study removed
    series = charts.get_dashboard(force=True)["patients_by_set"]["series"]
    assert {k: v[-1][1] for k, v in series.items()} == {"training": 1, "validation": 2}


def test_dashboard_is_recomputed_only_when_the_data_change(data, site, django_assert_max_num_queries):
    first = charts.get_dashboard(force=True)
    with django_assert_max_num_queries(4):  # the version probe only
        assert charts.get_dashboard() is first
    add_images(site, pseudonym(9), "9", "MR", when=APRIL)
    charts.FigureState.objects.filter(name=charts.DASHBOARD).update(
        updated=datetime(2020, 1, 1, tzinfo=UTC))  # older than the refresh interval
    summary.forget()
    assert charts.get_dashboard()["studies_by_modality"]["series"]["MRI"][-1] == ["2020-04", 1]


def test_data_manager_page_has_every_chart_with_a_text_alternative(client, data, make_user):
    client.force_login(make_user("data-manager"))
    page = client.get(reverse("figures:dashboard"))
    assert page.status_code == 200
    html = page.content.decode()
    for name in charts.CHARTS:
        url = reverse("figures:chart", args=[name])
        assert f'src="{url}"' in html
        svg = client.get(url)
        assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml"
        assert svg.content.startswith(b"<?xml") and b"<svg" in svg.content
    assert html.count('alt="') >= len(charts.CHARTS)
    for table in ("table-studies-by-centre", "table-age", "table-sex", "table-centres",
                  "table-completeness"):
        assert f'id="{table}"' in html
    # A column a month: years of them scroll inside their region, never widen the page.
    series = html.split('id="table-studies-by-centre"', 1)[0].rsplit("<div", 1)[1]
    assert 'class="nhsuk-details__text portal-table-scroll"' in series and 'tabindex="0"' in series
    assert client.get(reverse("figures:chart", args=["nope"])).status_code == 404
    assert pseudonym(1) not in html


def test_dashboard_shows_its_times_as_the_portal_shows_dates(client, data, make_user):
    client.force_login(make_user("data-manager"))
    html = client.get(reverse("figures:dashboard")).content.decode()
    computed = charts.get_dashboard()["computed_at"]
    shown = datetime.fromisoformat(computed).astimezone(timezone.get_current_timezone())
    assert f"Computed {shown:%-d %b %Y at %H:%M};" in html
    assert computed not in html  # never the raw ISO text
    centres = html.split('id="table-centres"', 1)[1].split("</table>", 1)[0]
    today = f"{timezone.localdate():%-d %b %Y}"  # the clinical records arrived today
    assert (centres.count("15 Mar 2020"), centres.count("10 Apr 2020"), centres.count(today)) \
        == (1, 1, 2)
    assert "2020-0" not in centres
    assert centres.count("nhsuk-table-responsive__heading") == 2 * 7  # labelled when stacked


def test_line_charts_count_from_zero_and_keep_overlapping_series_visible():
    from matplotlib.figure import Figure

    same = [["2020-03", 40], ["2020-04", 45]]
    ax = Figure().add_subplot()
    charts._lines(ax, {"months": ["2020-03", "2020-04"], "series": {"A": same, "B": same, "C": same}})
    assert ax.get_ylim()[0] == 0
    lines = ax.get_lines()
    assert len({line.get_marker() for line in lines}) == 3
    assert [line.get_markersize() for line in lines] == sorted(
        (line.get_markersize() for line in lines), reverse=True)  # later ones drawn smaller


def test_dashboard_is_for_data_managers_only(client, site, make_user):
    client.force_login(make_user("uploader", site=site))
    assert client.get(reverse("figures:dashboard")).status_code == 403
    assert client.get(reverse("figures:chart", args=["age"])).status_code == 403


def test_patients_by_centre_count_each_patient_once_per_centre_from_its_first_sending(
        site, other_site):
    add_images(site, pseudonym(1), "1", "DX", count=3, when=MARCH)
    add_images(site, pseudonym(2), "2", "CT", when=APRIL)
    add_images(other_site, pseudonym(1), "3", "CR", when=APRIL)  # moved hospitals
    add_clinical(site, pseudonym(1), "positive", age=34, sex="Female")
    board = charts.get_dashboard(force=True)["patients_by_centre"]
    assert board["series"][site.code][:2] == [["2020-03", 1], ["2020-04", 2]]
    assert board["series"][other_site.code][:2] == [["2020-03", 0], ["2020-04", 1]]
    assert board["series"][site.code][-1][1] == 2  # its record did not count patient 1 again
    assert charts.chart_svg("patients-by-centre").startswith("<?xml")
