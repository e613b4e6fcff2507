"""The README's site steps run in the default home turn the demo's home into a real
installation: ``make run`` (``init --demo``), then ``nccid site add RXX`` and ``nccid user add
jo.bloggs`` there. ``nccid run``, ``nccid init --demo``, ``nccid serve`` and ``nccid node`` then
refuse that home in one line, naming what was added and saying a real installation needs a new
NCCID_HOME: served, it would put the demo's published password beside real accounts, with test
numbers accepted. A demo home alone is still served by ``nccid serve`` (``nccid run`` starts it).

The demo's load itself takes its synthetic people's images (NHS test numbers) whatever
NCCID_ACCEPT_TEST_NUMBERS says, as a first ``make run`` from a plain shell has it unset.
Real processes in a home of their own."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from contextlib import closing

import pytest

from nccid.cli.tests.clirun import run_nccid


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nccid(home, *args: str, stdin: str = "", timeout: float = 300):
    # As a plain shell has it: the setting false (the test session accepts test numbers).
    return run_nccid(*args, stdin=stdin, timeout=timeout,
                     env={"NCCID_HOME": str(home), "NCCID_ACCEPT_TEST_NUMBERS": "false"})


def _count(home, table: str) -> int:
    # Closed at once (sqlite3's "with" only commits): an open connection keeps the -wal and -shm
    # files, which vanish under the next test's copy of the home when it is collected.
    with closing(sqlite3.connect(home / "nccid.sqlite3")) as db:
        return db.execute(f"select count(*) from {table}").fetchone()[0]  # noqa: S608 - ours


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo-home")
    loaded = _nccid(home, "init", "--demo")
    assert loaded.code == 0, loaded.err
    return home


def test_the_demo_load_stores_its_test_number_images_whatever_the_setting(demo_home):
    assert _count(demo_home, "warehouse_imagerecord") > 0
    assert _count(demo_home, "imaging_refusedinstance") == 0


@pytest.mark.parametrize("added", ["site", "account"])
def test_run_and_init_demo_refuse_a_demo_home_with_sites_or_accounts_added(demo_home, added,
                                                                           tmp_path):
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)  # (loading the demo takes a while: once per module)
    if added == "site":
        made = _nccid(home, "site", "add", "RXX", "--name", "Royal Example Hospital",
                      "--ae-title", "RXX_PACS", "--split", "split")
    else:
        made = _nccid(home, "user", "add", "jo.bloggs", "--role", "researcher",
                      "--password-stdin", stdin="Str0ng-passw0rd-jo\n")
    assert made.code == 0, made.err
    name = "RXX" if added == "site" else "jo.bloggs"

    ran = _nccid(home, "run", "--port", str(_free_port()), "--node-port", str(_free_port()))
    init = _nccid(home, "init", "--demo")
    # Refused before listening: were they not, they would run until the timeout.
    served = _nccid(home, "serve", "--port", str(_free_port()), timeout=60)
    node = _nccid(home, "node", "--port", str(_free_port()), timeout=60)

    for result in (ran, init, served, node):
        assert result.code == 1, result.out
        assert (f"this demo home ({home}) has sites/accounts added to it ({name}): the demo's "
                "accounts share a published password, so it is not served beside them. A real "
                "installation needs a new NCCID_HOME") in result.err_text
        assert "Traceback" not in result.err and "Demo accounts" not in result.out
    assert "Portal:" not in ran.out
    assert "Portal on" not in served.out and "DICOM node" not in node.out


def test_serve_passes_a_demo_home_alone(demo_home):
    # A port already taken: past the demo check, serve stops at once naming the port.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = _nccid(demo_home, "serve", "--host", "127.0.0.1", "--port", str(port), timeout=60)
    assert served.code == 1, served.out
    assert f"127.0.0.1:{port}" in served.err_text and "demo" not in served.err_text

