"""A NUL character in a data manager's filter (PostgreSQL refuses NUL in text) matches
nothing: the page answers as for any other unknown value, never with a server error."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from nccid.accounts.models import ApiToken, audit

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def manager(site, make_user):
    return make_user("data-manager", username="dm.nul")


def test_the_audit_log_filters_with_a_nul_match_nothing(manager):
    audit(manager, "vault.reveal", pseudonym="NCCID-AAAAAAAAAAAAAAAA", reason="site query 4")
    client = Client(raise_request_exception=False)
    client.force_login(manager)
    for query in ({"user": "\x00"}, {"user": "dm\x00"}, {"pseudonym": "NCCID-\x00"}):
        page = client.get(reverse("figures:audit"), query)
        assert page.status_code == 200
        assert "No event matches" in page.content.decode()


def test_my_uploads_with_a_nul_site_is_no_such_site(manager):
    client = Client(raise_request_exception=False)
    client.force_login(manager)
    assert client.get("/uploads/", {"site": "\x00"}).status_code == 404
    assert client.get("/uploads/", {"site": "RTEST"}).status_code == 200


def test_the_uploads_api_with_a_nul_site_is_no_such_site(manager):
    _, token = ApiToken.issue(manager, "automation")
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}")
    for url in ("/api/uploads", "/api/studies"):
        answer = client.get(url, {"site": "RT\x00EST"})
        assert answer.status_code == 404, url
        assert answer.json()["detail"].startswith("No site with code")
    assert client.get("/api/uploads", {"site": "RTEST"}).status_code == 200


def test_an_upload_for_a_nul_site_is_no_such_site(site, make_user):
    import io

    _, token = ApiToken.issue(make_user("uploader", site=site), "automation")
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}")
    upload = io.BytesIO(b"not read: the site is checked first")
    upload.name = "positive.xlsx"
    answer = client.post("/api/uploads", {"kind": "positive", "file": upload, "site": "\x00"})
    assert answer.status_code == 404 and answer.json()["detail"].startswith("No site with code")
