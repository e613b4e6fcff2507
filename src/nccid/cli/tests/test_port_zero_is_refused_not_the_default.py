"""``--port 0`` is a port out of range, refused in one line like any other: never read as
"no port given" (``nccid serve --port 0`` started on portal_port, 8000)."""

from __future__ import annotations

import socket

import pytest

from nccid.cli.tests.clirun import run_nccid


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("port-zero-home")
    assert run_nccid("init", env={"NCCID_HOME": str(home)}).code == 0
    return home


@pytest.fixture
def taken_port():
    """The configured port is taken, so a command that fell back to it fails at once saying so."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(("command", "setting"), [
    (["serve", "--port", "0"], "NCCID_PORTAL_PORT"),
    (["run", "--port", "0"], "NCCID_PORTAL_PORT"),
    (["run", "--node-port", "0"], "NCCID_NODE_PORT"),
])
def test_port_zero_is_one_clear_line(home, taken_port, command, setting):
    env = {"NCCID_HOME": str(home), setting: str(taken_port)}
    result = run_nccid(*command, env=env, timeout=60)
    option = command[1]
    assert result.code == 1, result.out
    assert f"{option} must be a port between 1 and 65535, got 0" in result.err_text
    assert "Traceback" not in result.err
