"""'nccid init' with a mistyped vault_database_url beside a main database holding patients (or
a mistyped database_url beside a vault holding entries) refuses, naming the setting, before it
sets anything up: before, it made a new empty vault, recorded the key there, 'nccid key check'
passed, and new patients' NHS/CHI numbers went into the stray vault. A refused init leaves no
database file it made (it left an empty one where the mistyped URL pointed), and never removes
one that was there before."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.clinical.tests.helpers import PEOPLE
from nccid.identity.tests.test_key_copy_from_before_a_rekey_is_refused import import_sheet


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A home whose main database holds two patients and whose vault holds their numbers."""
    home = tmp_path_factory.mktemp("populated") / "home"
    env = {"NCCID_HOME": str(home)}
    assert run_nccid("init", env=env).code == 0
    assert run_nccid("site", "add", "RKEY", "--name", "Keyed", env=env).code == 0
    imported = import_sheet(home, tmp_path_factory.mktemp("sheets"), PEOPLE[:2], "two.xlsx")
    assert imported.code == 0, imported.err
    return home


@pytest.fixture
def home(populated, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(populated, copy)
    return copy


def tables(path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [name for (name,) in db.execute("select name from sqlite_master")]


def _refused(result, *expected: str) -> None:
    assert result.code == 1 and "Traceback" not in result.err, result.err
    for text in expected:
        assert text in result.err_text, result.err_text


def test_init_refuses_a_new_vault_beside_a_main_database_holding_patients(home):
    stray = home / "vault-typo.sqlite3"
    env = {"NCCID_HOME": str(home), "NCCID_VAULT_DATABASE_URL": f"sqlite:///{stray}"}

    _refused(run_nccid("init", env=env),
             f"the main database in database_url (file {home}/nccid.sqlite3) holds 2 patients",
             f"the vault database in vault_database_url (file {stray}) holds no vault entry",
             "Check vault_database_url")
    assert not stray.exists()  # nothing set up in it, and no empty file left behind
    _refused(run_nccid("key", "check", env=env), "check vault_database_url names this "
             "installation's database")


def test_init_refuses_a_new_main_database_beside_a_vault_holding_entries(home):
    stray = home / "main-typo.sqlite3"
    env = {"NCCID_HOME": str(home), "NCCID_DATABASE_URL": f"sqlite:///{stray}"}

    _refused(run_nccid("init", env=env),
             f"the vault database in vault_database_url (file {home}/vault.sqlite3) holds 2 "
             "vault entries", f"the main database in database_url (file {stray}) holds no "
             "site, account or patient", "Check database_url")
    assert not stray.exists()


def test_init_refused_for_swapped_urls_leaves_no_file_where_one_points(home):
    stray = home / "main-typo.sqlite3"
    env = {"NCCID_HOME": str(home), "NCCID_DATABASE_URL": f"sqlite:///{stray}",
           "NCCID_VAULT_DATABASE_URL": f"sqlite:///{home}/nccid.sqlite3"}

    _refused(run_nccid("init", env=env), "holds the main database's tables", "swapped")
    assert not stray.exists()
    assert "accounts_site" in tables(home / "nccid.sqlite3")  # the one there before stays


def test_init_refused_keeps_an_empty_database_file_it_did_not_make(home):
    stray = home / "vault-typo.sqlite3"
    stray.touch()  # the operator's, made before: not init's to remove
    env = {"NCCID_HOME": str(home), "NCCID_VAULT_DATABASE_URL": f"sqlite:///{stray}"}

    _refused(run_nccid("init", env=env), "holds no vault entry")
    assert stray.exists() and tables(stray) == []


def test_init_runs_again_on_its_own_databases(home):
    result = run_nccid("init", env={"NCCID_HOME": str(home)})
    assert result.code == 0, result.err


def test_init_refused_after_setting_up_a_new_vault_removes_it(tmp_path):
    """The missing key file is found once both databases are set up: the new vault a mistyped
    vault_database_url named is removed with its tables."""
    home = tmp_path / "home"
    env = {"NCCID_HOME": str(home)}
    assert run_nccid("init", env=env).code == 0
    assert run_nccid("site", "add", "RKEY", "--name", "Keyed", env=env).code == 0
    (home / "secret.key").unlink()
    stray = home / "vault-typo.sqlite3"

    _refused(run_nccid("init", env={**env, "NCCID_VAULT_DATABASE_URL": f"sqlite:///{stray}"}),
             "is missing but this installation already holds data")
    assert not stray.exists()
    assert not (home / "secret.key").exists()
