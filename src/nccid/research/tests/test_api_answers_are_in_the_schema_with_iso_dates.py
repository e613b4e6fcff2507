"""The research operations declare every answer they give (status and shape) in the portal's
OpenAPI schema, and a cohort's page of images writes dates as ISO dates and arrival times
with their UTC offset, as the rest of the API and the export's images.csv do."""

from __future__ import annotations

import json
import re

import duckdb
import pytest
from django.test import Client

from nccid.accounts.models import ApiToken
from nccid.research import api
from nccid.web.tests.openapi_answers import undocumented

pytestmark = pytest.mark.django_db
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@pytest.fixture(autouse=True)
def _world(world, monkeypatch):
    monkeypatch.setattr(api, "source_factory", world.source)


def bearer(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 'test')[1]}"}


def test_each_research_operation_answers_only_what_its_schema_declares(researcher, make_user):
    client = Client()
    schema = client.get("/api/openapi.json").json()
    rita, uploader = bearer(researcher), bearer(make_user("uploader"))
    calls = [
        (rita, "post", "/api/research/cohort/count", {}, 200),
        (rita, "post", "/api/research/cohort/count", {"age_min": 151}, 400),
        (uploader, "post", "/api/research/cohort/count", {}, 403),
        (rita, "post", "/api/research/cohort/list?limit=3", {}, 200),
        (rita, "post", "/api/research/cohort/list?limit=0", {}, 400),
        (rita, "post", "/api/research/cohort/list?offset=-1", {}, 400),
        (uploader, "post", "/api/research/cohort/list", {}, 403),
        (rita, "post", "/api/research/export?formats=csv", {"modality": ["CT"]}, 200),
        (rita, "post", "/api/research/export?formats=tiff", {}, 400),
        (uploader, "post", "/api/research/export", {}, 403),
        (rita, "get", "/api/research/withdrawn", None, 200),
        (rita, "get", "/api/research/withdrawn?since=yesterday", None, 400),
        (uploader, "get", "/api/research/withdrawn", None, 403),
    ]
    wrong = []
    for who, method, path, body, status in calls:
        if method == "post":
            answer = client.post(path, body, content_type="application/json", **who)
        else:
            answer = client.get(path, **who)
        if answer.status_code != status:
            wrong.append(f"{method.upper()} {path}: {answer.status_code}, not {status}")
        wrong.append(undocumented(schema, method, path, answer))
    assert not [w for w in wrong if w]


def test_the_schema_gives_the_list_s_limit_and_offset_ranges():
    operation = Client().get("/api/openapi.json").json()["paths"]["/api/research/cohort/list"]["post"]
    ranges = {p["name"]: (p["schema"].get("minimum"), p["schema"].get("maximum"))
              for p in operation["parameters"]}
    assert ranges == {"limit": (1, api.MAX_LIMIT), "offset": (0, api.MAX_OFFSET)}


def test_a_page_of_images_writes_dates_as_iso_dates(researcher):
    answer = Client().post("/api/research/cohort/list?limit=5", {}, content_type="application/json",
                           **bearer(researcher))
    images = answer.json()["images"]
    assert len(images) == 5
    for image in images:
        assert ISO_DATE.fullmatch(image["study_date"]), image["study_date"]
        assert image["series_date"] is None or ISO_DATE.fullmatch(image["series_date"])


def test_a_catalogue_arrival_time_is_written_with_its_utc_offset():
    """The catalogue keeps arrival times in UTC without a zone (a DuckDB TIMESTAMP); the answer
    says so (the test world's images have none: arrival times are made here as the warehouse
    writes them)."""
    frame = duckdb.sql("SELECT DATE '2020-04-02' AS study_date, NULL::DATE AS series_date, "
                       "TIMESTAMP '2026-11-29 16:19:59.557' AS received_at, 'x' AS sop_uid").df()
    [row] = api.image_rows(frame)
    written = json.loads(api.portal.api.renderer.render(None, api.ImageOut(**row).model_dump(),
                                                        response_status=200))
    assert written == {**written, "study_date": "2020-04-02", "series_date": None,
                       "received_at": "2026-11-29T16:19:59.557Z"}
