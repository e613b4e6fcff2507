"""A demo home made before the demo marked its load (``demo.started`` / ``demo.loaded``): its
sites and accounts are all the demo's, so ``nccid run`` and ``nccid init --demo`` say it is a
demo home from an older version and to delete it (or use another NCCID_HOME), exit 1, adding
nothing. They told it to 'start the services with nccid serve and nccid node', steering a
developer to serve accounts whose password is published. A home with anything of an
operator's own keeps the refusal naming serve and node."""

from __future__ import annotations

import socket

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.demo import ACCOUNTS, SITES, demo_state

ROYAL = SITES[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nccid(home, *args: str):
    return run_nccid(*args, env={"NCCID_HOME": str(home)}, timeout=300)


@pytest.fixture
def older_demo_home(tmp_path):
    """As the reviewer made one: 'nccid init', then the demo's first site, no marks."""
    assert _nccid(tmp_path, "init").code == 0
    added = _nccid(tmp_path, "site", "add", ROYAL.code, "--name", ROYAL.name,
                   "--ae-title", ROYAL.ae_title)
    assert added.code == 0, added.err
    return tmp_path


@pytest.mark.parametrize("command", [("run",), ("init", "--demo")])
def test_an_older_demo_home_is_told_to_start_afresh(older_demo_home, command):
    ports = ("--port", str(_free_port()), "--node-port", str(_free_port()))
    result = _nccid(older_demo_home, *command, *(ports if command == ("run",) else ()))
    assert result.code == 1, result.out
    assert (f"a demo home from an older version: delete {older_demo_home} (or set NCCID_HOME "
            "elsewhere) to load the demo again") in result.err_text
    assert "nccid serve" not in result.err_text and "Traceback" not in result.err
    users = _nccid(older_demo_home, "user", "list")
    assert users.code == 0 and not [a for a, _, _ in ACCOUNTS if a in users.out.split()]


def _sites(*sites) -> None:
    from nccid.accounts.models import Site

    for code, name, ae_title in sites:
        Site.objects.create(code=code, name=name, ae_title=ae_title)


DEMO_SITES = [(s.code, s.name, s.ae_title) for s in SITES]


@pytest.mark.django_db(databases=["default", "vault"])
@pytest.mark.parametrize(("sites", "accounts", "state"), [
    (DEMO_SITES[:1], [], "older demo home"),
    (DEMO_SITES, [(username, role) for username, role, _ in ACCOUNTS], "older demo home"),
    ([], [("admin", "admin")], "not a demo home"),  # an operator's first account
    (DEMO_SITES[:1] + [("RXX", "Royal Example Hospital", "RXX")], [], "not a demo home"),
    ([(ROYAL.code, "Royal Town Hospital", ROYAL.ae_title)], [], "not a demo home"),
    (DEMO_SITES[:1], [("admin", "researcher")], "not a demo home"),
    (DEMO_SITES[:1], [("dm1", "data-manager")], "not a demo home"),
])
def test_only_the_demos_sites_and_accounts_make_an_older_demo_home(make_user, sites, accounts,
                                                                   state):
    _sites(*sites)
    for username, role in accounts:
        make_user(role, username=username)
    assert demo_state() == state
