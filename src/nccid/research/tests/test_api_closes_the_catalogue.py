"""Every research API answer closes the catalogue connection it opened, refused ones too."""

from __future__ import annotations

import duckdb
import pytest
from django.test import Client

from nccid.accounts.models import ApiToken
from nccid.research import api
from nccid.research.source import Source

pytestmark = pytest.mark.django_db


@pytest.fixture
def opened(world, monkeypatch) -> list[duckdb.DuckDBPyConnection]:
    """The connections the API opens on the test world's catalogue."""
    connections: list[duckdb.DuckDBPyConnection] = []

    def connect():
        connections.append(world.source().connect())
        return connections[-1]

    monkeypatch.setattr(api, "source_factory",
                        lambda: Source(connect=connect, warehouse=world.warehouse))
    return connections


def is_closed(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        con.execute("SELECT 1")
    except duckdb.ConnectionException:
        return True
    return False


@pytest.mark.parametrize(("url", "body", "status"), [
    ("/api/research/cohort/count", '{"modality": ["CT"]}', 200),
    ("/api/research/cohort/list?limit=3", "{}", 200),
    ("/api/research/cohort/count", '{"clinical": ["temprature=38"]}', 400),
    ("/api/research/cohort/count", '{"clinical": ["age>=old"]}', 400),
])
def test_each_answer_closes_its_connection(researcher, opened, url, body, status):
    _, token = ApiToken.issue(researcher, "test")
    answer = Client().post(url, data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == status
    assert opened and all(is_closed(con) for con in opened)
