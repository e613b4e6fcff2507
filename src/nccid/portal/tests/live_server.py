"""A real ``nccid serve`` in a subprocess, on a fresh NCCID_HOME, for browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from pathlib import Path

NCCID = [sys.executable, "-m", "nccid.cli.main"]


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll until the server accepts connections; fail early if it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nccid serve exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)  # polling interval, not synchronisation: the loop re-checks the port
    raise TimeoutError(f"nccid serve did not listen on port {port} within {timeout:.0f} s")


def server_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL", "NCCID_CONFIG",
                        "DJANGO_SETTINGS_MODULE")}
    env["NCCID_HOME"] = str(home)
    return env


def run_cli(env: dict, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([*NCCID, *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"nccid {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@contextmanager
def live_portal(env: dict, log: Path):
    """Yield the base URL of a running portal (on an initialised home); stop it afterwards."""
    port = free_port()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*NCCID, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            try:
                wait_for_port(port, process)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n{log.read_text()[-2000:]}") from None
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
