"""A real ``nccid serve`` in a subprocess, on a fresh NCCID_HOME, for browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import NamedTuple

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


class Site(NamedTuple):
    code: str
    name: str
    ae_title: str


class Account(NamedTuple):
    username: str
    role: str
    site: str | None = None  # a site's code: uploaders have one, data managers none


def prepared_home(home: Path, *, demo: bool = False, site: Site | None = None,
                  accounts: Iterable[Account] = (), password: str = "") -> dict:
    """``nccid init`` on ``home`` (with the demo sites and accounts if ``demo``), then ``site``
    and each of ``accounts`` (with ``password``) added as an operator would, in that order.
    -> the environment that runs ``nccid`` on this home."""
    env = server_env(home)
    run_cli(env, "init", *(["--demo"] if demo else []))
    if site:
        run_cli(env, "site", "add", site.code, "--name", site.name, "--ae-title", site.ae_title)
    for account in accounts:
        at_site = ["--site", account.site] if account.site else []
        run_cli(env, "user", "add", account.username, "--role", account.role, *at_site,
                "--password-stdin", stdin=password + "\n")
    return env


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


@contextmanager
def portal_on(home: Path, **how) -> Iterator[str]:
    """``home`` prepared (``how``: ``prepared_home``'s options) and served: yield its base URL.
    The server's log is ``home``/serve.log."""
    with live_portal(prepared_home(home, **how), home / "serve.log") as url:
        yield url
