"""Settings read afresh, without the test session's settings variables; the session's come
back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nccid.config import reset_settings_cache

SESSION_VARIABLES = ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL", "NCCID_CONFIG",
                     "NCCID_DATABASE_URL", "NCCID_S3_ENDPOINT", "NCCID_VALIDATION_PERCENT",
                     "VALIDATION_PERCENT")


@contextmanager
def fresh_settings(monkeypatch, **variables: str) -> Iterator[None]:
    for name in SESSION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    try:
        yield
    finally:
        monkeypatch.undo()
        reset_settings_cache()
