"""``nccid run`` never leaves the portal or the node behind holding their ports: a closed
terminal (HUP to the whole process group) and a parent killed outright (-9) both end every
process it started. Real processes on free ports; readiness and exit are polled, not slept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nccid.cli.tests.clirun import run_nccid

START_SECONDS = 180
STOP_SECONDS = 60


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An initialised home with the demo data, so 'run' starts without loading it again."""
    home = tmp_path_factory.mktemp("run-home")
    result = run_nccid("init", "--demo", env={"NCCID_HOME": str(home)}, timeout=300)
    assert result.code == 0, result.err
    return home


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_parents())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def _poll(condition, seconds: float) -> bool:
    """Check ``condition`` every 0.2 s until it holds or ``seconds`` pass (polling, with a
    deadline: the processes' own pace decides, not a guessed delay)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture
def running(home, tmp_path):
    """``nccid run`` in a process group of its own (as a shell runs a job), ready on free
    ports; yields (process, ports, the pids of everything it started). Leftovers are killed."""
    portal_port, node_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL", "NCCID_CONFIG")}
    env["NCCID_HOME"] = str(home)
    with open(tmp_path / "run.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nccid.cli.main", "run", "--port", str(portal_port),
             "--node-port", str(node_port)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    started: set[int] = set()
    try:
        ready = _poll(lambda: proc.poll() is not None or (
            _answers(f"http://127.0.0.1:{portal_port}/healthz") and _accepts(node_port)),
            START_SECONDS)
        assert ready and proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        started = _descendants(proc.pid)
        yield proc, (portal_port, node_port), started
    finally:
        for pid in _alive(started | {proc.pid}):
            os.kill(pid, signal.SIGKILL)
        try:  # and anything started since, still in run's process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_a_closed_terminal_stops_every_process_and_frees_the_ports(running):
    proc, ports, started = running
    assert len(started) >= 3  # the portal's master and workers, and the node
    os.killpg(proc.pid, signal.SIGHUP)  # what a shell sends its jobs when the terminal closes
    proc.wait(timeout=STOP_SECONDS)
    assert _poll(lambda: not _alive(started), STOP_SECONDS), _alive(started)
    assert all(_port_is_free(port) for port in ports)


def test_a_killed_parent_takes_its_services_with_it(running):
    proc, ports, started = running
    os.kill(proc.pid, signal.SIGKILL)  # no chance to forward anything
    proc.wait(timeout=STOP_SECONDS)
    assert _poll(lambda: not _alive(started), STOP_SECONDS), _alive(started)
    assert all(_port_is_free(port) for port in ports)
