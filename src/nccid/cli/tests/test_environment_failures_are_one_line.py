"""What the environment refuses (a database URL Django cannot use, a server that is down, a
database never migrated, a folder that cannot be made or written, an object store that does
not answer) is one line naming the setting or path, exit status 1, no traceback and no
password, from a real process (as the operator's shell sees it). A bug keeps its traceback."""

from __future__ import annotations

import pytest

from nccid.cli.tests.clirun import run_cli, run_nccid

PASSWORD = "pw-secret-9"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("env-home")
    assert run_nccid("init", env={"NCCID_HOME": str(home)}).code == 0
    return home


def _one_line_failure(result, *expected: str) -> None:
    assert result.code == 1, result.err
    assert "Traceback" not in result.err and PASSWORD not in result.err, result.err
    assert result.err_text.startswith("error:") and result.err.count("error:") == 1
    for text in expected:
        assert text in result.err_text, result.err_text


@pytest.mark.parametrize(("url", "expected"), [
    ("mysql://u@db/nccid", "database_url has the scheme 'mysql', which nccid cannot use"),
    ("postgresql+psycopg://u@db/nccid", "scheme 'postgresql+psycopg', which nccid cannot use"),
    (f"postgres://u:{PASSWORD}@db:notaport/nccid", "database_url is not a valid URL"),
    ("notaurl", "database_url is not a database URL"),
])
@pytest.mark.parametrize("command", [["site", "list"], ["init"]])
def test_a_database_url_django_cannot_use(home, url, expected, command):
    result = run_nccid(*command, env={"NCCID_HOME": str(home), "NCCID_DATABASE_URL": url})
    _one_line_failure(result, expected, "use sqlite:///path/to/file or postgres://")


@pytest.mark.parametrize("command", [["site", "list"], ["init"]])
@pytest.mark.parametrize("setting", ["database_url", "vault_database_url"])
def test_a_database_server_that_is_down(home, setting, command):
    url = f"postgres://nccid:{PASSWORD}@127.0.0.1:1/nccid"  # nothing listens on port 1
    result = run_nccid(*command, env={"NCCID_HOME": str(home), f"NCCID_{setting.upper()}": url})
    _one_line_failure(result, f"cannot use the database in {setting} (", "Connection refused",
                      "that the server is running")


@pytest.mark.parametrize("command", [["site", "list"], ["init"]])
def test_an_sqlite_file_in_a_missing_folder(home, tmp_path, command):
    path = tmp_path / "absent" / "nccid.sqlite3"
    result = run_nccid(*command, env={"NCCID_HOME": str(home),
                                      "NCCID_DATABASE_URL": f"sqlite:///{path}"})
    _one_line_failure(result, f"cannot use the database in database_url (file {path})",
                      "unable to open database file", "its folder exists")


def test_a_main_database_never_set_up_names_the_setting_then_init(home, tmp_path):
    """An absent or empty database is a new installation's, or a mistyped setting: the
    setting is named before 'nccid init' (which would make an empty one beside the data)."""
    path = tmp_path / "absent.sqlite3"
    result = run_nccid("site", "list", env={"NCCID_HOME": str(home),
                                            "NCCID_DATABASE_URL": f"sqlite:///{path}"})
    _one_line_failure(result, f"the database in database_url (file {path}) does not exist",
                      "check database_url names this installation's database",
                      "for a new installation, run 'nccid init'")
    assert not path.exists()  # a check makes no file
    path.touch()
    result = run_nccid("site", "list", env={"NCCID_HOME": str(home),
                                            "NCCID_DATABASE_URL": f"sqlite:///{path}"})
    _one_line_failure(result, f"the database in database_url (file {path}) is not set up "
                      "(empty: nccid never made its tables there)",
                      "for a new installation, run 'nccid init'")


@pytest.mark.parametrize(("home_path", "reason"), [
    ("/proc/nccid-home", "No such file or directory"),
    ("/etc/hostname", "File exists"),
])
def test_init_with_a_home_it_cannot_create(home_path, reason):
    result = run_nccid("init", env={"NCCID_HOME": home_path})
    _one_line_failure(result, f"cannot create the folder {home_path} (NCCID_HOME): {reason}")


def test_a_log_folder_that_cannot_be_written_stops_every_command(home, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = run_nccid("site", "list", env={"NCCID_HOME": str(home),
                                            "NCCID_LOG_DIR": str(not_a_folder)})
    _one_line_failure(result, f"cannot write the log folder {not_a_folder} (log_dir)")


def test_an_output_path_the_system_refuses(home):
    result = run_nccid("template", "positive", "-o", "/proc/template.xlsx",
                       env={"NCCID_HOME": str(home)})
    _one_line_failure(result, "No such file or directory: /proc/template.xlsx")


def test_init_against_an_object_store_that_does_not_answer(tmp_path):
    result = run_nccid("init", env={
        "NCCID_HOME": str(tmp_path / "home"), "NCCID_STORAGE_URL": "s3://bucket/prefix",
        "NCCID_S3_ENDPOINT": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b", "AWS_MAX_ATTEMPTS": "1"})  # fail fast, not after retries
    _one_line_failure(result, "cannot reach or create bucket 'bucket'")


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only the named kinds become one line; anything else is a programming error to see."""

    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr("nccid.cli.system.get_settings", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(monkeypatch, "config", "show")
