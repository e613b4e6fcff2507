"""A port already taken (another nccid, another program) is one clear line and exit status 1
from ``nccid run``, ``nccid serve`` and ``nccid node``, never a traceback or a retry loop; and
``--port 0`` is a port out of range, refused in one line like any other, never read as "no
port given" (``nccid serve --port 0`` started on portal_port, 8000)."""

from __future__ import annotations

import socket

import pytest

from nccid.cli.tests.clirun import run_nccid


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("busy-home")
    assert run_nccid("init", env={"NCCID_HOME": str(home)}).code == 0
    return home


@pytest.fixture
def taken_port():
    """A port something is listening on for the length of the test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("command", "option", "names"), [
    (["run", "--node-port", "{free}"], "--port", "for the portal"),
    (["run", "--port", "{free}"], "--node-port", "for the DICOM node"),
    (["serve"], "--port", "for the portal"),
    (["node"], "--port", "is another node running?"),
])
def test_a_taken_port_is_one_clear_line(home, taken_port, command, option, names):
    args = [arg.format(free=_free_port()) for arg in command] + [option, str(taken_port)]
    result = run_nccid(*args, env={"NCCID_HOME": str(home)}, timeout=60)
    assert result.code == 1
    assert f"cannot listen on 127.0.0.1:{taken_port}" in result.err_text
    assert names in result.err_text and "Traceback" not in result.err


@pytest.mark.parametrize(("command", "setting"), [
    (["serve", "--port", "0"], "NCCID_PORTAL_PORT"),
    (["run", "--port", "0"], "NCCID_PORTAL_PORT"),
    (["run", "--node-port", "0"], "NCCID_NODE_PORT"),
])
def test_port_zero_is_one_clear_line(home, taken_port, command, setting):
    # The configured port is taken, so a command that fell back to it fails at once saying so.
    env = {"NCCID_HOME": str(home), setting: str(taken_port)}
    result = run_nccid(*command, env=env, timeout=60)
    option = command[1]
    assert result.code == 1, result.out
    assert f"{option} must be a port between 1 and 65535, got 0" in result.err_text
    assert "Traceback" not in result.err
