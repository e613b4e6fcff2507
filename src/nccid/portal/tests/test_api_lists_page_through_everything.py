"""GET /api/uploads and /api/studies reach every item a page at a time (offset, limit; the
total in X-Total-Count, the next page in Link), refuse a limit or offset out of range with
422 naming it, answer an uploader's other-site code with 403, and say so in the schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from nccid.accounts.models import ApiToken
from nccid.clinical.models import Upload
from nccid.imaging.models import StudyReceipt

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _bearer(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 'job')[1]}"}


def _uploads(site, count: int) -> list[int]:
    return [Upload.objects.create(site=site, kind="positive", status="accepted").pk
            for _ in range(count)]


def _studies(site, count: int) -> list[str]:
    start = timezone.now() - timedelta(days=1)
    made = [StudyReceipt.objects.create(
        site=site, study_uid=f"2.25.{site.pk}{n:04d}", patient=f"NCCID-TEST{n:04d}", source="node",
        status="stored", first_received=start, last_received=start + timedelta(minutes=n % 3))
        for n in range(count)]
    return [receipt.study_uid for receipt in made]


def _walk(client, url: str, auth: dict, key: str) -> tuple[list, list[int]]:
    """Follow the Link header from the first page to the last."""
    seen, totals = [], []
    while url:
        answer = client.get(url, **auth)
        assert answer.status_code == 200, answer.content
        seen += [item[key] for item in answer.json()]
        totals.append(int(answer["X-Total-Count"]))
        link = answer.get("Link", "")
        url = link[1:link.index(">")] if link else ""
    return seen, totals


def test_every_upload_is_reached_through_the_pages(client, site, make_user):
    made = _uploads(site, 7)
    auth = _bearer(make_user("uploader", site=site))
    seen, totals = _walk(client, "/api/uploads?limit=3", auth, "id")
    assert seen == sorted(made, reverse=True) and totals == [7, 7, 7]
    last = client.get("/api/uploads?limit=3&offset=6", **auth)
    assert [u["id"] for u in last.json()] == [min(made)] and "Link" not in last


def test_every_study_is_reached_through_the_pages_each_once(client, site, other_site, make_user):
    """Studies received at the same moment come in a fixed order, so none is skipped or repeated."""
    made = _studies(site, 8)
    _studies(other_site, 2)
    auth = _bearer(make_user("data-manager"))
    seen, totals = _walk(client, f"/api/studies?site={site.code}&limit=3", auth, "study_uid")
    assert sorted(seen) == sorted(made) and len(seen) == 8 and totals == [8, 8, 8]
    everything, _ = _walk(client, "/api/studies?limit=1000", auth, "study_uid")
    assert len(everything) == 10


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=5000", "offset=-1",
                                   "offset=99999999999999999999", "limit=ten"])
@pytest.mark.parametrize("url", ["/api/uploads", "/api/studies"])
def test_a_limit_or_offset_out_of_range_is_422_naming_it(client, site, make_user, url, query):
    answer = client.get(f"{url}?{query}", **_bearer(make_user("uploader", site=site)))
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["query", query.split("=")[0]]


@pytest.mark.parametrize("url", ["/api/uploads", "/api/studies"])
def test_an_uploader_naming_another_site_is_403_whether_or_not_it_exists(client, site, other_site,
                                                                        make_user, url):
    auth = _bearer(make_user("uploader", site=site))
    answers = [client.get(f"{url}?site={code}", **auth) for code in (other_site.code, "NOSUCH")]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()
    assert "own site" in answers[0].json()["detail"] and other_site.code not in answers[0].json()["detail"]
    assert client.get(f"{url}?site={site.code.lower()}", **auth).status_code == 200


def test_the_schema_says_what_the_lists_do(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    for url in ("/api/uploads", "/api/studies"):
        operation = paths[url]["get"]
        parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
        assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 1000)
        assert parameters["offset"]["minimum"] == 0
        assert {"200", "401", "403", "404", "422"} <= set(operation["responses"])
        assert {"X-Total-Count", "Link"} <= set(operation["responses"]["200"]["headers"])
