"""Every answer of the JSON API is JSON and is one its schema declares (status and shape), so
a client generated from /api/openapi.json knows every error it can get; a 404 never tells an
upload of another site from a missing one; bad input is 422 with each problem located."""

from __future__ import annotations

import io
import re

import pytest
from django.test import Client
from django.utils import timezone

from nccid.accounts.models import ApiToken
from nccid.clinical.models import Upload
from nccid.imaging.models import HeldImage
from nccid.web.tests.openapi_answers import undocumented

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def bearer(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 'job')[1]}"}


def sheet(name: str = "sheet.xlsx") -> io.BytesIO:
    upload = io.BytesIO(b"not read: the request is refused before")
    upload.name = name
    return upload


@pytest.fixture
def world(site, other_site, make_user):
    ours = Upload.objects.create(site=site, kind="positive", status="cancelled")
    theirs = Upload.objects.create(site=other_site, kind="positive", status="preview")
    decided = HeldImage.objects.create(site=site, sop_uid="2.25.1", study_uid="2.25.2", size=1,
                                       reason="text", source="node", status="released",
                                       decided_at=timezone.now())
    return {"uploader": bearer(make_user("uploader", site=site)),
            "manager": bearer(make_user("data-manager")),
            "researcher": bearer(make_user("researcher")), "admin": bearer(make_user("admin")),
            "ours": ours.pk, "theirs": theirs.pk, "decided": decided.pk}


def calls(w: dict) -> list[tuple[str, str, str, dict, int]]:
    """(who, method, path, form, status): each operation's refusals, and a few successes."""
    theirs, ours, decided = w["theirs"], w["ours"], w["decided"]
    return [
        ("uploader", "get", "/api/me", {}, 200),
        ("uploader", "get", "/api/templates/nonsense", {}, 404),
        ("uploader", "post", "/api/uploads", {"kind": "nonsense", "file": sheet()}, 422),
        ("uploader", "post", "/api/uploads", {"kind": "positive", "file": sheet(),
                                              "site": "OTHER"}, 404),
        ("researcher", "post", "/api/uploads", {"kind": "positive", "file": sheet()}, 403),
        ("admin", "post", "/api/uploads", {"kind": "positive", "file": sheet()}, 422),
        ("uploader", "get", "/api/uploads?site=OTHER", {}, 403),
        ("manager", "get", "/api/uploads?site=NOSUCH", {}, 404),
        ("uploader", "get", "/api/uploads?limit=0", {}, 422),
        ("uploader", "get", f"/api/uploads/{theirs}", {}, 404),
        ("uploader", "get", "/api/uploads/abc", {}, 422),
        ("researcher", "get", f"/api/uploads/{theirs}", {}, 403),
        ("uploader", "post", f"/api/uploads/{theirs}/confirm", {}, 404),
        ("uploader", "post", f"/api/uploads/{ours}/confirm", {}, 409),
        ("manager", "post", f"/api/uploads/{theirs}/confirm", {}, 403),
        ("manager", "post", f"/api/uploads/{theirs}/cancel", {}, 403),
        ("uploader", "post", "/api/uploads/abc/cancel", {}, 422),
        ("researcher", "get", "/api/studies", {}, 403),
        ("uploader", "get", "/api/studies?limit=5000", {}, 422),
        ("uploader", "get", "/api/review/held", {}, 403),
        ("manager", "get", "/api/review/held", {}, 200),
        ("manager", "get", "/api/review/held/999999/image.png", {}, 404),
        ("uploader", "get", f"/api/review/held/{decided}/image.png", {}, 403),
        ("manager", "post", f"/api/review/held/{decided}/release", {}, 409),
        ("manager", "post", "/api/review/held/999999/reject", {}, 404),
        ("manager", "post", "/api/review/held/abc/reject", {}, 422),
        ("researcher", "post", f"/api/review/held/{decided}/reject", {}, 403),
    ]


def test_each_operation_answers_only_what_its_schema_declares(client, world):
    schema = client.get("/api/openapi.json").json()
    wrong = []
    for who, method, path, form, status in calls(world):
        answer = getattr(client, method)(path, form, **world[who])
        if answer.status_code != status:
            wrong.append(f"{who} {method.upper()} {path}: {answer.status_code}, not {status}")
        wrong.append(undocumented(schema, method, path, answer))
    assert not [w for w in wrong if w]


def test_every_operation_declares_401_and_answers_it_in_json(client):
    schema = client.get("/api/openapi.json").json()
    wrong = []
    for template, operations in schema["paths"].items():
        path = re.sub(r"\{[^}]+\}", "1", template)
        for method in operations:
            answer = getattr(client, method)(path, content_type="application/json")
            assert answer.status_code == 401, f"{method} {path}"
            wrong.append(undocumented(schema, method, path, answer))
    assert not [w for w in wrong if w]


def test_a_session_post_without_the_csrf_token_is_a_declared_403(client, site, make_user):
    schema = client.get("/api/openapi.json").json()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user("uploader", site=site))
    answer = browser.post("/api/uploads/1/cancel")
    assert answer.status_code == 403
    assert undocumented(schema, "post", "/api/uploads/1/cancel", answer) is None


def test_another_sites_upload_and_a_missing_one_get_the_same_404(client, world):
    """An uploader must not learn that upload 7 exists at another site from the answer's words."""
    for suffix, method in (("", "get"), ("/confirm", "post"), ("/cancel", "post")):
        answers = [getattr(client, method)(f"/api/uploads/{pk}{suffix}", **world["uploader"])
                   for pk in (world["theirs"], 999999)]
        assert [a.status_code for a in answers] == [404, 404]
        assert answers[0].json() == answers[1].json(), suffix


def test_a_data_manager_who_sees_an_upload_is_told_it_may_not_confirm_it(client, world):
    """403 as docs/api.md says of a role's refusal: the upload is no secret to them (they see it)."""
    answer = client.post(f"/api/uploads/{world['theirs']}/confirm", **world["manager"])
    assert answer.status_code == 403 and "uploader" in answer.json()["detail"]
    assert Upload.objects.get(pk=world["theirs"]).status == "preview"


def test_confirming_a_cancelled_upload_is_a_409_conflict(client, world):
    answer = client.post(f"/api/uploads/{world['ours']}/confirm", **world["uploader"])
    assert answer.status_code == 409 and "cancelled" in answer.json()["detail"]


@pytest.mark.parametrize(("who", "form", "loc"), [
    ("uploader", {"kind": "nonsense"}, ["form", "kind"]),
    ("admin", {"kind": "positive"}, ["form", "site"]),
    # the file is located as ninja locates its own check of it (a missing file), ["file", "file"]
    ("uploader", {"kind": "positive", "too_big": True}, ["file", "file"]),
    # ninja's checks of the form come first and alone: a missing file hides the unknown kind
    ("uploader", {"kind": "nonsense", "no_file": True}, ["file", "file"]),
])
def test_bad_input_is_422_listing_each_problem_with_its_location(client, world, settings, who,
                                                                  form, loc):
    if form.pop("too_big", False):
        settings.NCCID_MAX_SPREADSHEET_BYTES = 4
    files = {} if form.pop("no_file", False) else {"file": sheet()}
    answer = client.post("/api/uploads", {**form, **files}, **world[who])
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"] == loc and problem["msg"]


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/api/nonsense", 404), ("get", "/api/research/nonsense", 404),
    ("get", "/api/me/", 404), ("post", "/api/me", 405), ("get", "/api/uploads/1/confirm", 405),
    ("get", "/api/research/cohort/count", 405),
])
def test_unknown_addresses_and_wrong_methods_answer_json(client, world, method, path, status):
    answer = getattr(client, method)(path, **world["uploader"])
    assert answer.status_code == status
    assert answer["Content-Type"].startswith("application/json")
    assert answer.json()["detail"]
    if status == 405:
        assert answer["Allow"] in answer.json()["detail"]


@pytest.mark.parametrize("path", ["/api/uploads/", "/api/upload", "/api/uploads/1/confirm/"])
def test_a_post_with_a_token_to_no_operation_is_a_json_404_not_the_csrf_page(world, path):
    answer = Client(enforce_csrf_checks=True).post(path, **world["uploader"])
    assert answer.status_code == 404
    assert answer["Content-Type"].startswith("application/json") and answer.json()["detail"]
