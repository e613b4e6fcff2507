"""``nccid config show`` prints each URL as it is set, only its secrets masked: a SQLite URL
keeps its slashes (``sqlite:////abs`` was shown ``sqlite://abs``, a host named "abs";
``sqlite:///rel`` was shown ``sqlite:/rel``), and a password is masked whole even when
written without percent-encoding."""

from __future__ import annotations

import json

import pytest

from nccid.cli.tests.clirun import run_cli
from nccid.cli.tests.settings_env import fresh_settings


@pytest.mark.parametrize(("url", "shown"), [
    ("sqlite:////srv/nccid/nccid.sqlite3", "sqlite:////srv/nccid/nccid.sqlite3"),
    ("sqlite:///relative/nccid.sqlite3", "sqlite:///relative/nccid.sqlite3"),
    ("postgres://nccid:pw-4-show@db.example:5432/nccid?sslmode=require&sslpassword=pw-4-show",
     "postgres://nccid:****@db.example:5432/nccid?sslmode=require&sslpassword=****"),
    ("postgres://nccid:p@ss:w0rd@db.example/nccid", "postgres://nccid:****@db.example/nccid"),
    # written without percent-encoding: urlsplit ends the host at / # ?, showing the rest
    ("postgres://nccid:w0rd/pw-4-show@db.example/nccid", "postgres://nccid:****@db.example/nccid"),
    ("postgres://nccid:w0rd#pw-4-show@db.example/nccid", "postgres://nccid:****@db.example/nccid"),
    ("postgres://nccid:w0rd?pw-4-show@db.example/nccid?sslpassword=pw-4-show",
     "postgres://nccid:****@db.example/nccid?sslpassword=****"),
    ("postgres://nccid:p@ss/w0rd@db.example/nccid", "postgres://nccid:****@db.example/nccid"),
])
def test_config_show_prints_a_url_as_set_with_its_secrets_masked(tmp_path, monkeypatch, url, shown):
    with fresh_settings(monkeypatch, NCCID_HOME=str(tmp_path), NCCID_DATABASE_URL=url):
        result = run_cli(monkeypatch, "config", "show")
    assert result.code == 0, result.err
    assert json.loads(result.out)["database_url"] == shown
    assert "pw-4-show" not in result.out and "w0rd" not in result.out


def test_the_default_sqlite_urls_are_shown_absolute(tmp_path, monkeypatch):
    with fresh_settings(monkeypatch, NCCID_HOME=str(tmp_path)):
        result = run_cli(monkeypatch, "config", "show")
    shown = json.loads(result.out)
    home = tmp_path.resolve()
    assert shown["database_url"] == f"sqlite:///{home / 'nccid.sqlite3'}"
    assert shown["vault_database_url"] == f"sqlite:///{home / 'vault.sqlite3'}"
