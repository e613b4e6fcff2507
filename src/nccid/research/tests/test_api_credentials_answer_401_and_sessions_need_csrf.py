"""The research API's credentials are the portal's: no or a bad token is 401 (not a CSRF
failure), a session needs its CSRF token, a bearer token needs none."""

from __future__ import annotations

import pytest
from django.test import Client

from nccid.accounts.models import ApiToken
from nccid.research import api

pytestmark = pytest.mark.django_db
COUNT = "/api/research/cohort/count"


@pytest.fixture(autouse=True)
def _world(world, monkeypatch):
    monkeypatch.setattr(api, "source_factory", world.source)


def post(client: Client, **headers):
    return client.post(COUNT, data="{}", content_type="application/json", **headers)


@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": "Bearer nccid_wrong"}])
def test_a_post_without_good_credentials_is_401(headers):
    answer = post(Client(enforce_csrf_checks=True), **headers)
    assert answer.status_code == 401
    assert "Authentication required" in answer.json()["detail"]


def test_a_session_without_its_csrf_token_is_403(researcher):
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)
    assert post(client).status_code == 403


def test_a_session_with_its_csrf_token_is_answered(researcher):
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)
    client.get("/research/")  # the portal page sets the CSRF cookie, as in the browser
    token = client.cookies["csrftoken"].value
    answer = post(client, HTTP_X_CSRFTOKEN=token)
    assert answer.status_code == 200 and answer.json()["patients"] > 0


def test_a_bearer_token_needs_no_csrf_token(researcher):
    _, token = ApiToken.issue(researcher, "test")
    answer = post(Client(enforce_csrf_checks=True), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 200 and answer.json()["patients"] > 0


def test_an_inactive_accounts_token_is_401(researcher):
    _, token = ApiToken.issue(researcher, "test")
    researcher.is_active = False
    researcher.save()
    assert post(Client(), HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
