"""The JSON API: bearer tokens (digests only), the browser session with CSRF, JSON errors."""

from __future__ import annotations

import pytest
from django.test import Client

from nccid.accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_token_identifies_its_user_and_only_its_digest_is_stored(client, site, make_user):
    user = make_user("uploader", site=site)
    row, token = ApiToken.issue(user, "script")
    response = client.get("/api/me", **bearer(token))
    assert response.status_code == 200
    assert response.json() == {"username": user.username, "role": "uploader", "site": site.code}
    row.refresh_from_db()
    assert row.last_used is not None
    assert token not in {v for t in ApiToken.objects.values() for v in map(str, t.values())}
    assert row.digest == ApiToken.digest_of(token)


@pytest.mark.parametrize("header", [None, "Bearer nccid_not-a-real-token", "Basic dXNlcjpwYXNz",
                                    "Bearer "])
def test_missing_or_wrong_credentials_get_401_in_json(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/api/summary", **extra)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert "Bearer" in response.json()["detail"]


def test_a_deactivated_account_s_token_stops_working(client, site, make_user):
    user = make_user("uploader", site=site)
    _, token = ApiToken.issue(user, "script")
    user.is_active = False
    user.save()
    assert client.get("/api/me", **bearer(token)).status_code == 401


def test_the_browser_session_works_and_unsafe_calls_need_the_csrf_token(site, make_user):
    user = make_user("uploader", site=site)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get("/api/me").json()["username"] == user.username
    refused = browser.post("/api/uploads/1/cancel")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    # A token caller needs no CSRF token: the header cannot be sent by another site's page.
    _, token = ApiToken.issue(user, "script")
    assert browser.post("/api/uploads/999999/cancel", **bearer(token)).status_code == 404


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/summary", "/api/uploads", "/api/uploads/{upload_id}/confirm",
                 "/api/templates/{kind}", "/api/studies", "/api/review/held"):
        assert path in paths, path
    schemes = schema.json()["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    assert client.get("/api/docs").status_code == 200


def test_the_openapi_schema_is_valid_for_client_generators(client):
    from openapi_spec_validator import validate

    schema = client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    validate(schema)  # raises with the path of the first error


def test_every_operation_and_parameter_of_the_reference_says_what_it_is(client):
    """Swagger UI and generated clients show these: a bare name is not enough to use it by."""
    schema = client.get("/api/openapi.json").json()
    missing, parameters = [], 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            summary = operation.get("summary", "")
            if not summary or summary.istitle():  # ninja's default: the function's name
                missing.append(f"{method.upper()} {path}")
            for parameter in operation.get("parameters", []):
                parameters += 1
                if not parameter.get("description"):
                    missing.append(f"{method.upper()} {path} {parameter['name']}")
    assert parameters >= 15 and "/api/research/withdrawn" in schema["paths"]
    assert not missing, "undescribed: " + ", ".join(missing)


def test_unknown_objects_and_bad_input_get_clear_json_errors(client, site, make_user):
    user = make_user("uploader", site=site)
    _, token = ApiToken.issue(user, "script")
    missing = client.get("/api/uploads/424242", **bearer(token))
    assert missing.status_code == 404 and missing.json()["detail"] == "No such upload."
    not_a_number = client.get("/api/uploads/abc", **bearer(token))
    assert not_a_number.status_code in (404, 422)
    no_template = client.get("/api/templates/nonsense", **bearer(token))
    assert no_template.status_code == 404 and "positive" in no_template.json()["detail"]
    no_file = client.post("/api/uploads", {"kind": "positive"}, **bearer(token))
    assert no_file.status_code == 422
    assert any("file" in str(e["loc"]) for e in no_file.json()["detail"])
