from __future__ import annotations

import pytest

from .world import build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """One warehouse with training and validation patients, shared read-only by the tests."""
    return build_world(tmp_path_factory.mktemp("research-world"))


@pytest.fixture
def researcher(make_user):
    return make_user("researcher", username="rita")


@pytest.fixture
def ask(researcher):
    """POST to the research API with the researcher's token: a dict is sent as JSON, a str as
    written (1e400 must reach the server as typed)."""
    from django.test import Client

    from nccid.accounts.models import ApiToken

    _, token = ApiToken.issue(researcher, "test")
    client = Client(raise_request_exception=False)

    def post(body: dict | str, url: str = "/api/research/cohort/count"):
        return client.post(url, data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")

    return post


@pytest.fixture
def data_manager(make_user):
    return make_user("data-manager", username="dora")


@pytest.fixture(scope="session")
def validation_world(tmp_path_factory):
    """Enough validation patients (20 positive, 10 negative) for a report to be allowed."""
    return build_world(tmp_path_factory.mktemp("research-validation-world"), n_people=60)
