"""An empty NCCID_HOME or NCCID_CONFIG counts as unset, as the docs say of every variable:
the home is ./var (not the working folder) and ./nccid.toml is still read."""

from __future__ import annotations

import pytest

from nccid.cli.tests.settings_env import fresh_settings
from nccid.config import get_settings


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with fresh_settings(monkeypatch):
        yield tmp_path


def test_an_empty_nccid_home_means_var(workdir, monkeypatch):
    monkeypatch.setenv("NCCID_HOME", "")
    monkeypatch.delenv("NCCID_CONFIG", raising=False)
    settings = get_settings()
    assert settings.home == (workdir / "var").resolve()
    assert settings.key_file == (workdir / "var" / "secret.key").resolve()


def test_an_empty_nccid_config_still_reads_the_local_file(workdir, monkeypatch):
    monkeypatch.setenv("NCCID_HOME", str(workdir / "home"))  # holds no nccid.toml
    monkeypatch.setenv("NCCID_CONFIG", "")
    (workdir / "nccid.toml").write_text("validation_percent = 35\n")
    assert get_settings().validation_percent == 35
