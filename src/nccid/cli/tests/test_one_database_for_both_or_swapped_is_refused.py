"""database_url and vault_database_url naming one database, or swapped, are refused at once
with one line naming both settings: before, init made a key file then failed "no such table:
identity_keycheck", and a main URL naming the vault passed 'nccid key check' then failed
"no such table: accounts_site" (each database's migration record lists every migration, so
the record alone cannot tell one database from the other)."""

from __future__ import annotations

import pytest

from nccid.cli.common import _database_identity
from nccid.cli.tests.clirun import run_nccid


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("two-databases")
    assert run_nccid("init", env={"NCCID_HOME": str(home)}).code == 0
    return home


def _refused(result, *expected: str) -> None:
    assert result.code == 1, result.err
    assert "Traceback" not in result.err and result.err.count("error:") == 1, result.err
    for text in ("database_url", "vault_database_url", *expected):
        assert text in result.err_text, result.err_text


def test_init_with_one_database_for_both_is_refused_before_a_key_is_made(tmp_path):
    home = tmp_path / "home"
    one = f"sqlite:///{home}/one.sqlite3"
    result = run_nccid("init", env={"NCCID_HOME": str(home), "NCCID_DATABASE_URL": one,
                                    "NCCID_VAULT_DATABASE_URL": one})
    _refused(result, "name the same database", f"file {home}/one.sqlite3")
    assert not (home / "secret.key").exists()


@pytest.mark.parametrize("command", [["key", "check"], ["site", "list"], ["init"]])
def test_a_main_url_naming_the_vault_database_is_refused(home, command):
    result = run_nccid(*command, env={"NCCID_HOME": str(home),
                                      "NCCID_DATABASE_URL": f"sqlite:///{home}/vault.sqlite3"})
    _refused(result, "name the same database")


@pytest.mark.parametrize("command", [["key", "check"], ["site", "list"], ["init"]])
def test_swapped_urls_are_refused(home, command):
    result = run_nccid(*command, env={
        "NCCID_HOME": str(home), "NCCID_DATABASE_URL": f"sqlite:///{home}/vault.sqlite3",
        "NCCID_VAULT_DATABASE_URL": f"sqlite:///{home}/nccid.sqlite3"})
    _refused(result, f"the database in database_url (file {home}/vault.sqlite3) holds the "
                     "vault database's tables", "swapped")


def test_the_same_postgresql_database_is_one_whatever_the_role_or_spelling_of_the_host():
    main = _database_identity("postgres://nccid:pw@LOCALHOST/nccid")
    assert _database_identity("postgres://nccid_vault@127.0.0.1:5432/nccid") == main
    assert _database_identity("postgres:///nccid") == main  # the local socket
    assert _database_identity("postgres://nccid@localhost/nccid_vault") != main
    assert _database_identity("postgres://nccid@localhost:5433/nccid") != main
    # One database, the vault in a schema of its own: a separate store, allowed.
    assert _database_identity("postgres://v@localhost/nccid?options=-c%20search_path%3Dvault") != main


def test_servers_named_by_query_parameters_are_told_apart():
    """A port or socket folder given as ?port= / ?host= (as psycopg reads them) names another
    server: read as localhost:5432, two servers were refused as one database after an upgrade."""
    first = _database_identity("postgres://postgres@127.0.0.1/nccid?port=18545")
    assert _database_identity("postgres://postgres@127.0.0.1/nccid?port=18546") != first
    assert _database_identity("postgres://postgres@127.0.0.1:18545/nccid") == first
    assert "18545" in first[-1]
    sockets = [_database_identity(f"postgres://postgres@/nccid?host=/tmp/{name}&port=5432")
               for name in ("pg", "pg2")]
    assert sockets[0] != sockets[1]
    assert _database_identity("postgres://postgres@/nccid?host=/tmp/pg&port=5432") == sockets[0]
