"""A key in nccid.toml that no setting reads (a typo: ``databse_url``, ``keyfile``) stops every
command with one line naming it, the file and the nearest setting; it was ignored, and the
installation ran on the default (local SQLite, a new key file). ``debug`` is a true/false
setting like the others: ``debug = "maybe"`` is an error, not silently false."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.config import ConfigError, Settings, get_settings, reset_settings_cache


def _toml_value(value) -> str:
    return json.dumps(value if isinstance(value, bool | int) else str(value))


@pytest.mark.parametrize(("toml", "named"), [
    ('databse_url = "postgres://nccid@db.internal/nccid"', "unknown setting 'databse_url' (did you mean 'database_url'?)"),
    ('keyfile = "/etc/nccid/keys/secret.key"', "unknown setting 'keyfile' (did you mean 'key_file'?)"),
    ('public_ur1 = "https://nccid.example.nhs.uk"', "unknown setting 'public_ur1' (did you mean 'public_url'?)"),
    ("[storage_option]\nregion = \"eu-west-2\"", "unknown setting 'storage_option' (did you mean 'storage_options'?)"),
    ('hme = "/srv/nccid"', "unknown setting 'hme' (did you mean 'home'?)"),
])
def test_an_unknown_key_names_itself_the_file_and_the_nearest_setting(clean_env, toml, named):
    (clean_env / "nccid.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError) as caught:
        get_settings()
    assert str(caught.value) == f"{clean_env / 'nccid.toml'}: {named}"


def test_every_setting_is_a_known_key(clean_env):
    """The file may set each setting of ``Settings`` (the home only outside the home:
    test_the_home_may_be_set_in_a_file_outside_it)."""
    defaults = get_settings()
    lines = [f"{f.name} = {_toml_value(getattr(defaults, f.name))}" for f in fields(Settings)
             if f.name not in ("home", "storage_options")]
    (clean_env / "nccid.toml").write_text("\n".join(lines) + '\n[storage_options]\nregion = "x"\n')
    reset_settings_cache()
    assert get_settings().storage_options == {"region": "x"}
    assert len(lines) == len(fields(Settings)) - 2


@pytest.mark.parametrize(("toml", "debug"), [("debug = true", True), ('debug = "yes"', True),
                                             ("debug = false", False), ('debug = "0"', False)])
def test_debug_reads_true_or_false(clean_env, toml, debug):
    (clean_env / "nccid.toml").write_text(toml + "\n")
    assert get_settings().debug is debug


def test_debug_that_is_neither_true_nor_false_is_an_error(clean_env):
    (clean_env / "nccid.toml").write_text('debug = "maybe"\n')
    with pytest.raises(ConfigError, match=r"debug must be true or false, got 'maybe' \(in .*nccid.toml\)"):
        get_settings()


def test_misspelt_keys_stop_a_real_command_in_one_line(tmp_path):
    config = tmp_path / "nccid.toml"
    config.write_text('databse_url = "postgres://nccid@db.internal/nccid"\n'
                      'keyfile = "/etc/nccid/keys/secret.key"\n')
    result = run_nccid("config", "show", env={"NCCID_HOME": str(tmp_path)})
    assert result.code == 1 and "Traceback" not in result.err and result.out == ""
    assert ("unknown setting 'databse_url' (did you mean 'database_url'?); unknown setting "
            "'keyfile' (did you mean 'key_file'?)") in result.err_text
    assert str(config) in result.err_text.replace(" ", "")


def test_a_plain_debug_another_program_set_counts_as_unset_but_nccid_debug_is_checked(
        clean_env, monkeypatch):
    monkeypatch.setenv("DEBUG", "*")  # as node.js's debug module has it
    reset_settings_cache()
    assert get_settings().debug is False
    (clean_env / "nccid.toml").write_text("debug = true\n")  # the file still decides
    reset_settings_cache()
    assert get_settings().debug is True
    monkeypatch.setenv("NCCID_DEBUG", "*")
    reset_settings_cache()
    with pytest.raises(ConfigError, match=r"debug must be true or false, got '\*' \(from NCCID_DEBUG\)"):
        get_settings()
