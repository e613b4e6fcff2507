"""Effective settings (environment over nccid.toml over defaults) and ``nccid config show``."""

from __future__ import annotations

import json

import pytest

from nccid.cli.tests.clirun import run_cli, run_nccid
from nccid.cli.tests.settings_env import fresh_settings
from nccid.config import ConfigError, get_settings, reset_settings_cache

TOML = """
database_url = "postgres://nccid:toml-db-pass@db.example/nccid"
storage_url = "s3://nccid-warehouse"
validation_percent = 25
deid_profile = "shift-dates"

[storage_options]
key = "AKIAEXAMPLEKEYID"
secret = "example-secret-access-key"
anon = false

[storage_options.client_kwargs]
endpoint_url = "http://minio-user:endpoint-pass@s3.example:8333"
region_name = "eu-west-2"
"""


@pytest.fixture
def configured(tmp_path, monkeypatch):
    """Settings from a fresh home holding TOML; the session's settings come back afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "nccid.toml").write_text(TOML)
    with fresh_settings(monkeypatch, NCCID_HOME=str(home)):
        yield home


def test_defaults_live_under_nccid_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NCCID_HOME", str(tmp_path / "h"))
    for name in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL", "NCCID_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    reset_settings_cache()
    try:
        s = get_settings()
        home = (tmp_path / "h").resolve()
        assert s.database_url == f"sqlite:///{home / 'nccid.sqlite3'}"
        assert s.vault_database_url == f"sqlite:///{home / 'vault.sqlite3'}"
        assert (s.key_file, s.storage_url) == (home / "secret.key", str(home / "warehouse"))
        assert (s.validation_percent, s.deid_profile, s.node_port) == (20, "retain-dates", 11112)
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_toml_then_environment_with_the_nccid_name_winning(configured, monkeypatch):
    s = get_settings()
    assert s.database_url.endswith("@db.example/nccid") and s.validation_percent == 25
    assert s.storage_options["client_kwargs"]["region_name"] == "eu-west-2"
    monkeypatch.setenv("DATABASE_URL", "postgres://other-app@db/other")
    monkeypatch.setenv("NCCID_DATABASE_URL", "postgres://nccid@db/nccid")
    monkeypatch.setenv("VALIDATION_PERCENT", "")  # empty means unset
    reset_settings_cache()
    s = get_settings()
    assert s.database_url == "postgres://nccid@db/nccid" and s.validation_percent == 25


@pytest.mark.parametrize(("name", "value", "message"), [
    ("NCCID_VALIDATION_PERCENT", "120", "validation_percent must be between 0 and 100"),
    ("NCCID_NODE_PORT", "eleven", "node_port must be a whole number"),
    ("NCCID_DEID_PROFILE", "keep-all", "deid_profile must be one of"),
])
def test_bad_values_are_clear_errors(configured, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    reset_settings_cache()
    with pytest.raises(ConfigError, match=message):
        get_settings()


def test_config_show_masks_every_secret(configured, monkeypatch):
    monkeypatch.setenv("VAULT_DATABASE_URL", "postgres://vault:env-vault-pass@db/nccid_vault")
    reset_settings_cache()
    result = run_cli(monkeypatch, "config", "show")
    assert result.code == 0, result.err
    for secret in ("toml-db-pass", "env-vault-pass", "AKIAEXAMPLEKEYID", "example-secret-access-key",
                   "endpoint-pass"):
        assert secret not in result.out
    shown = json.loads(result.out)
    assert shown["database_url"] == "postgres://nccid:****@db.example/nccid"
    assert shown["vault_database_url"] == "postgres://vault:****@db/nccid_vault"
    assert shown["storage_options"]["key"] == shown["storage_options"]["secret"] == "****"
    assert shown["storage_options"]["anon"] is False
    assert shown["storage_options"]["client_kwargs"] == {
        "endpoint_url": "http://minio-user:****@s3.example:8333", "region_name": "eu-west-2"}
    assert shown["home"] == str(configured.resolve())


def test_broken_toml_is_one_clear_line_from_a_real_process(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "nccid.toml").write_text('database_url = "unterminated\n')
    result = run_nccid("config", "show", env={"NCCID_HOME": str(home)})
    assert result.code == 1
    assert "nccid.toml: not valid TOML" in result.err_text and "Traceback" not in result.err


def test_every_part_registers_its_commands():
    from typer.main import get_command

    from nccid.cli.main import typer_app

    names = set(get_command(typer_app).commands)
    assert {"init", "config", "site", "user", "link", "vault", "key"} <= names


def test_nccid_config_naming_a_missing_file_is_an_error(configured, monkeypatch, tmp_path):
    monkeypatch.setenv("NCCID_CONFIG", str(tmp_path / "absent.toml"))
    reset_settings_cache()
    with pytest.raises(ConfigError, match="NCCID_CONFIG names .*absent.toml, which is not a file"):
        get_settings()


@pytest.mark.parametrize("query", ["password=q-pass-1", "sslpassword=q-pass-1",
                                   "sslmode=require&password=q-pass-1&application_name=nccid",
                                   "secret=q-pass-1", "auth_token=q-pass-1"])
def test_config_show_masks_secrets_in_a_url_query(configured, monkeypatch, query):
    monkeypatch.setenv("NCCID_DATABASE_URL", f"postgres://nccid@db.example/nccid?{query}")
    reset_settings_cache()
    result = run_cli(monkeypatch, "config", "show")
    assert result.code == 0, result.err
    shown = json.loads(result.out)["database_url"]
    assert "q-pass-1" not in result.out
    assert shown == f"postgres://nccid@db.example/nccid?{query.replace('q-pass-1', '****')}"
