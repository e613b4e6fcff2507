"""The data directory is a setting like the others: ``home`` in the nccid.toml named by
NCCID_CONFIG or in the working folder sets it, NCCID_HOME winning. The home's own nccid.toml
cannot set it (that file is found through the home): refused, saying where to set it."""

from __future__ import annotations

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.cli.tests.settings_env import fresh_settings
from nccid.config import ConfigError, get_settings


@pytest.fixture
def no_home(tmp_path, monkeypatch):
    """A working folder, no NCCID_HOME and none of the session's settings variables."""
    monkeypatch.chdir(tmp_path)
    with fresh_settings(monkeypatch):
        monkeypatch.delenv("NCCID_HOME", raising=False)
        yield tmp_path


def test_home_in_the_working_folders_file_sets_the_data_directory(no_home):
    (no_home / "nccid.toml").write_text('home = "data"\nvalidation_percent = 30\n')
    settings = get_settings()
    home = (no_home / "data").resolve()
    assert settings.home == home and settings.key_file == home / "secret.key"
    assert settings.database_url == f"sqlite:///{home / 'nccid.sqlite3'}"
    assert settings.validation_percent == 30  # the file that names the home is the one read


def test_home_in_the_file_nccid_config_names_is_relative_to_that_file(no_home, monkeypatch):
    etc = no_home / "etc"
    etc.mkdir()
    (etc / "nccid.toml").write_text(f'home = "{no_home / "srv"}"\n')
    monkeypatch.setenv("NCCID_CONFIG", str(etc / "nccid.toml"))
    assert get_settings().home == (no_home / "srv").resolve()
    get_settings.cache_clear()
    (etc / "nccid.toml").write_text('home = "here"\n')
    assert get_settings().home == (etc / "here").resolve()


def test_nccid_home_wins_over_the_files_home(no_home, monkeypatch):
    (no_home / "nccid.toml").write_text('home = "data"\nnode_port = 11113\n')
    monkeypatch.setenv("NCCID_HOME", str(no_home / "elsewhere"))
    settings = get_settings()
    assert settings.home == (no_home / "elsewhere").resolve() and settings.node_port == 11113


def test_home_in_the_homes_own_file_is_refused_saying_where_to_set_it(no_home, monkeypatch):
    home = no_home / "h"
    home.mkdir()
    (home / "nccid.toml").write_text('home = "/srv/nccid"\n')
    monkeypatch.setenv("NCCID_HOME", str(home))
    with pytest.raises(ConfigError) as caught:
        get_settings()
    assert str(caught.value).startswith(f"{home / 'nccid.toml'}: 'home' cannot be set in the "
                                        "nccid.toml inside the data directory")
    assert "NCCID_HOME" in str(caught.value) and "NCCID_CONFIG" in str(caught.value)


def test_a_second_file_in_the_home_a_file_names_is_refused_not_ignored(no_home):
    (no_home / "data").mkdir()
    (no_home / "data" / "nccid.toml").write_text('database_url = "postgres://db.example/x"\n')
    (no_home / "nccid.toml").write_text('home = "data"\n')
    with pytest.raises(ConfigError, match="holds a nccid.toml of its own that would be ignored"):
        get_settings()


@pytest.mark.parametrize("value", ['""', "12", "[]"])
def test_a_home_that_is_not_a_path_is_named(no_home, value):
    (no_home / "nccid.toml").write_text(f"home = {value}\n")
    with pytest.raises(ConfigError, match=r"home must be a path \(a string\), got .* \(in nccid.toml\)"):
        get_settings()


def test_config_show_prints_the_home_the_file_set(no_home):
    (no_home / "nccid.toml").write_text('home = "data"\n')
    result = run_nccid("config", "show", env={"NCCID_HOME": ""})  # empty: unset; cwd: no_home
    assert result.code == 0, result.err
    assert f'"home": "{(no_home / "data").resolve()}"' in result.out
