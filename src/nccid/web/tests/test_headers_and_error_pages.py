"""The portal's security headers, its pages for errors, and its API reference served locally."""

from __future__ import annotations

import re

import pytest
from django.template.loader import render_to_string
from django.test import Client

from nccid.web.headers import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/login/", "/static/portal/portal.css", "/api/openapi.json",
                                 "/no-such-page/"])
def test_every_response_carries_the_content_security_policy(client, url):
    response = client.get(url)
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "camera=()" in response["Permissions-Policy"]


def test_pages_hold_no_inline_script_the_policy_would_block(client, site, make_user):
    client.force_login(make_user("uploader", site))
    for url in ("/", "/upload/positive/", "/api/docs"):
        body = client.get(url).content.decode()
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", body, flags=re.S)
        assert scripts, url
        for attributes, code in scripts:
            assert 'src="' in attributes or 'type="application/json"' in attributes, (url, code)


def test_the_api_reference_is_served_from_the_portal_not_a_cdn(client, site, make_user):
    client.force_login(make_user("researcher"))
    body = client.get("/api/docs").content.decode()
    assert '<html lang="en-GB">' in body and '<main id="maincontent"' in body
    assert "/static/ninja/swagger-ui-bundle.js" in body
    assert re.findall(r'(?:src|href)="(https?:[^"]*)"', body) == []
    assert client.get("/static/ninja/swagger-ui-bundle.js").status_code == 200


@pytest.mark.parametrize(("url", "status", "says"), [
    ("/uploads/no-such-upload/", 404, ["<h1>Page not found</h1>"]),
    ("/review/", 403, ["<h1>You cannot see this page</h1>", "(Site uploader)"]),
])
def test_an_unknown_or_forbidden_page_gets_a_portal_page_saying_so(client, site, make_user,
                                                                    url, status, says):
    client.force_login(make_user("uploader", site))
    response = client.get(url)
    body = response.content.decode()
    assert response.status_code == status and "nhsuk-header" in body
    assert all(text in body for text in says), says


def test_a_form_sent_without_its_csrf_token_is_refused_with_a_clear_page(site, make_user):
    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/login/", {"username": "anyone", "password": "anything"})
    body = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Your form could not be sent</h1>" in body and "Nothing was changed" in body


def test_the_server_error_page_needs_no_context_and_no_database():
    body = render_to_string("500.html")
    assert "Sorry, there is a problem with the service" in body
    assert "/static/nhsuk/nhsuk-frontend.min.css" in body


def test_the_browsers_favicon_request_finds_the_nhs_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert client.get(response["Location"]).status_code == 200


def test_a_page_the_warehouse_cannot_serve_says_so_with_503_and_keeps_the_reason_in_the_log(
        rf, caplog, site, make_user):
    from nccid.warehouse.storage import StorageError
    from nccid.web.unavailable import WarehouseUnavailableMiddleware

    middleware = WarehouseUnavailableMiddleware(lambda request: None)
    failure = StorageError("cannot tell whether 'catalogue/state.json' is stored: /mnt/gone")
    request = rf.post("/withdraw/")
    request.user = make_user("data-manager")
    response = middleware.process_exception(request, failure)
    body = response.content.decode()
    assert (response.status_code, response["Retry-After"]) == (503, "300")
    assert "<h1>The image warehouse cannot be reached</h1>" in body and "nhsuk-header" in body
    assert "/mnt/gone" not in body and "/mnt/gone" in caplog.text
    assert middleware.process_exception(rf.get("/"), ValueError("a bug")) is None  # still a 500
