"""Every setting is checked for its type and range when read; a bad one stops the command with
one line naming the setting and where it came from (the variable or the file), never a
traceback later (at bind, in pynetdicom, in the database driver) and never a silent cut."""

from __future__ import annotations

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.config import ConfigError, get_settings


@pytest.mark.parametrize(("toml", "message"), [
    ('storage_options = "x"', r"storage_options must be a table"),
    ("key_file = 5", r"key_file must be a path \(a string\), got 5"),
    ("database_url = 5", r"database_url must be a string, got 5"),
    ("node_port = 11112.5", r"node_port must be a whole number, got 11112.5"),
    ("portal_port = true", r"portal_port must be a whole number, got True"),
    ("node_port = 70000", r"node_port must be between 1 and 65535, got 70000"),
    ("portal_port = 0", r"portal_port must be between 1 and 65535, got 0"),
    ("pending_retention_days = 0", r"pending_retention_days must be 1 or more, got 0"),
    ('node_ae_title = "ABCDEFGHIJKLMNOPQ"', r"node_ae_title must be 1 to 16 characters"),
    ('node_ae_title = "   "', r"node_ae_title must be 1 to 16 characters"),
    ('node_ae_title = "A\\\\B"', r"node_ae_title must be 1 to 16 characters"),
    ('node_ae_title = "A\\tB"', r"node_ae_title must be 1 to 16 characters"),
])
def test_a_bad_toml_value_names_the_setting_and_the_file(clean_env, toml, message):
    (clean_env / "nccid.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        get_settings()
    assert str(clean_env / "nccid.toml") in str(caught.value)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("NCCID_NODE_PORT", "-1", "node_port must be between 1 and 65535, got -1"),
    ("NCCID_PORTAL_PORT", "65536", "portal_port must be between 1 and 65535, got 65536"),
    ("NCCID_NODE_PORT", "11112.5", "node_port must be a whole number"),
    ("NCCID_PENDING_RETENTION_DAYS", "-5", "pending_retention_days must be 1 or more, got -5"),
    ("NCCID_NODE_AE_TITLE", "ABCDEFGHIJKLMNOPQRSTU", "node_ae_title must be 1 to 16 characters"),
])
def test_a_bad_environment_value_names_the_variable(clean_env, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message) as caught:
        get_settings()
    assert f"from {name}" in str(caught.value)


def test_good_values_still_pass(clean_env, monkeypatch):
    (clean_env / "nccid.toml").write_text(
        'node_port = 104\nportal_port = "8080"\nnode_ae_title = " NCCID-NODE_1 "\n'
        "pending_retention_days = 1\n[storage_options]\nregion = \"eu-west-2\"\n")
    settings = get_settings()
    assert (settings.node_port, settings.portal_port) == (104, 8080)
    assert settings.node_ae_title == "NCCID-NODE_1" and settings.pending_retention_days == 1
    assert settings.storage_options == {"region": "eu-west-2"}


def test_a_file_that_is_not_utf8_is_one_line(clean_env):
    (clean_env / "nccid.toml").write_bytes(b"\xff\xfe bad\n")
    with pytest.raises(ConfigError, match="nccid.toml: not valid TOML \\(not UTF-8 text"):
        get_settings()


def test_a_config_path_that_cannot_be_read_is_one_line(clean_env):
    (clean_env / "nccid.toml").mkdir()  # exists but cannot be read as a file (even by root)
    with pytest.raises(ConfigError, match="cannot read .*nccid.toml: Is a directory"):
        get_settings()


@pytest.mark.parametrize(("toml", "names"), [
    ('storage_options = "x"\n', "storage_options must be a table ([storage_options])"),
    ("key_file = 5\n", "key_file must be a path"),
    ("database_url = 5\n", "database_url must be a string"),
    ("node_port = 70000\n", "node_port must be between 1 and 65535"),
])
def test_bad_values_are_one_line_from_a_real_process(tmp_path, toml, names):
    home = tmp_path / "home"
    home.mkdir()
    (home / "nccid.toml").write_text(toml)
    result = run_nccid("config", "show", env={"NCCID_HOME": str(home)})
    assert result.code == 1 and "Traceback" not in result.err
    assert names in result.err_text and str(home / "nccid.toml") in result.err_text.replace(" ", "")


def test_an_unreadable_toml_from_a_real_process(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "nccid.toml").write_bytes(b"\xff\xfe bad\n")
    result = run_nccid("site", "list", env={"NCCID_HOME": str(home)})
    assert result.code == 1 and "Traceback" not in result.err
    assert "not UTF-8" in result.err_text
