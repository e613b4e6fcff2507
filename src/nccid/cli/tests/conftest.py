"""Fixtures of the CLI and settings tests."""

from __future__ import annotations

import pytest

from nccid.cli.tests.settings_env import fresh_settings


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """A fresh home and working folder, and none of the session's settings variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    with fresh_settings(monkeypatch, NCCID_HOME=str(home)):
        yield home
