"""Django's own request limits (DATA_UPLOAD_MAX_NUMBER_FIELDS, DATA_UPLOAD_MAX_MEMORY_SIZE)
answer 400 before any view runs its checks: under /api/ that answer is JSON ``{"detail": …}``
naming the limit, as every API answer is (docs/api.md); elsewhere the portal's 400 page."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from nccid.accounts.models import ApiToken

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _client(user=None) -> Client:
    headers = {} if user is None else {
        "HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 'job')[1]}"}
    return Client(raise_request_exception=False, **headers)


def _too_many_fields() -> str:
    return urlencode([(f"f{n}", "x") for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)])


def test_too_many_form_fields_to_the_api_answer_json(make_user, site):
    answer = _client(make_user("uploader", site=site)).post(
        "/api/uploads", data=_too_many_fields(),
        content_type="application/x-www-form-urlencoded")

    assert answer.status_code == 400
    assert answer["Content-Type"].startswith("application/json")
    assert answer.json() == {"detail": f"The request has more than "
                                       f"{settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields, the "
                                       "most the API reads."}


def test_too_big_a_json_body_to_the_api_answers_json(make_user):
    body = '{"clinical": [], "pad": "' + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + '"}'
    answer = _client(make_user("researcher")).post(
        "/api/research/cohort/count", data=body, content_type="application/json")

    assert answer.status_code == 400
    assert answer["Content-Type"].startswith("application/json")
    assert answer.json()["detail"].startswith("The request is larger than the 10 MB the API reads")


def test_too_many_form_fields_to_a_portal_page_get_the_portal_page(db):
    answer = _client().post(reverse("portal:login"), data=_too_many_fields(),
                            content_type="application/x-www-form-urlencoded")

    assert answer.status_code == 400
    assert answer["Content-Type"].startswith("text/html")
    assert "Sorry, the portal could not read that request" in answer.content.decode()
