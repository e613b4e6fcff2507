"""``nccid run`` is the demo: it loads the synthetic sites, accounts (one published password)
and patients into a new home only. A home with a site or an account of its own (made with
``nccid init``, ``site add``, ``user add``) is refused in one line and gets nothing of the demo;
so is ``nccid init --demo``. Real processes in homes of their own."""

from __future__ import annotations

import socket

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.demo import ACCOUNTS, SITES

DEMO_USERNAMES = [username for username, _, _ in ACCOUNTS]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nccid(home, *args: str, stdin: str = ""):
    return run_nccid(*args, stdin=stdin, env={"NCCID_HOME": str(home)}, timeout=300)


@pytest.fixture
def home_with_a_site(tmp_path):
    assert _nccid(tmp_path, "init").code == 0
    added = _nccid(tmp_path, "site", "add", "RXX", "--name", "Royal Example Hospital")
    assert added.code == 0, added.err
    return tmp_path


@pytest.fixture
def home_with_an_account(tmp_path):
    assert _nccid(tmp_path, "init").code == 0
    added = _nccid(tmp_path, "user", "add", "dm1", "--role", "data-manager", "--password-stdin",
                   stdin="a long enough passphrase 7\n")
    assert added.code == 0, added.err
    return tmp_path


def _assert_nothing_of_the_demo(home) -> None:
    users, sites = _nccid(home, "user", "list"), _nccid(home, "site", "list")
    assert users.code == 0 and sites.code == 0
    assert not [name for name in DEMO_USERNAMES if name in users.out.split()], users.out
    assert not [s.code for s in SITES if s.code in sites.out.split()], sites.out


def test_run_refuses_a_home_with_a_site_of_its_own(home_with_a_site):
    result = _nccid(home_with_a_site, "run", "--port", str(_free_port()),
                    "--node-port", str(_free_port()))
    assert result.code == 1, result.out
    assert ("this home has sites/accounts of its own: 'nccid run' is the demo; start the "
            "services with 'nccid serve' and 'nccid node'") in result.err_text
    assert "Traceback" not in result.err and "Demo accounts" not in result.out
    _assert_nothing_of_the_demo(home_with_a_site)


def test_init_demo_refuses_a_home_with_an_account_of_its_own(home_with_an_account):
    result = _nccid(home_with_an_account, "init", "--demo")
    assert result.code == 1, result.out
    assert "this home has sites/accounts of its own" in result.err_text
    assert "without --demo" in result.err_text
    assert "Demo accounts" not in result.out and "nccid-demo-only" not in result.out
    _assert_nothing_of_the_demo(home_with_an_account)
    assert "dm1" in _nccid(home_with_an_account, "user", "list").out


@pytest.mark.parametrize(("given", "services_get"), [
    (None, "true"), ("", "true"), ("false", "false"), ("true", "true")])
def test_the_demos_services_accept_test_numbers_unless_told_otherwise(given, services_get):
    from nccid.cli.system import demo_environment

    environ = {"PATH": "/usr/bin"} | ({} if given is None else {"NCCID_ACCEPT_TEST_NUMBERS": given})
    assert demo_environment(environ) == {"PATH": "/usr/bin",
                                         "NCCID_ACCEPT_TEST_NUMBERS": services_get}
