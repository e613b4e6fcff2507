"""``/healthz`` answers 200 when the databases and the warehouse answer, 503 naming the part
that does not, and says nothing more (it is open to anyone)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_a_healthy_instance_answers_200_without_signing_in(client, backend):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "ok", "vault": "ok", "warehouse": "ok"}
    assert "no-store" in answer["Cache-Control"]


def test_a_missing_warehouse_answers_503_and_names_only_the_part(client, tmp_path, monkeypatch, caplog):
    from nccid.config import reset_settings_cache

    missing = tmp_path / "unmounted-volume" / "warehouse"
    monkeypatch.setenv("STORAGE_URL", str(missing))
    reset_settings_cache()
    try:
        answer = client.get("/healthz")
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert answer.status_code == 503
    assert answer.json() == {"status": "failing", "database": "ok", "vault": "ok", "warehouse": "failing"}
    assert str(tmp_path) not in answer.content.decode()
    assert "health check: warehouse failed" in caplog.text


def test_an_unreachable_database_answers_503(client, monkeypatch):
    from django.db import connections

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("connection to the vault's server refused")

    monkeypatch.setattr(connections["vault"], "cursor", refuse)
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["vault"] == "failing" and answer.json()["database"] == "ok"


def test_a_warehouse_that_stopped_answering_answers_503_within_seconds(client, s3_server,
                                                                        monkeypatch):
    """An object store that hangs (paused, its connections open) holds the check for a few
    seconds (``WAREHOUSE_WITHIN``), not for the storage timeout (30 s) and its retries."""
    import time

    from nccid.config import reset_settings_cache

    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STORAGE_URL", f"s3://{s3_server.make_bucket('health')}/nccid")
    reset_settings_cache()
    try:
        assert client.get("/healthz").status_code == 200  # its connection is open
        with s3_server.paused():
            started = time.monotonic()
            answer = client.get("/healthz")
            took = time.monotonic() - started
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert answer.status_code == 503 and answer.json()["warehouse"] == "failing"
    assert took < 6
