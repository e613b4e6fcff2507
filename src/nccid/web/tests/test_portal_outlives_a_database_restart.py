"""The portal on a real PostgreSQL server (a scratch one, whatever the session's database):
after the server ended every connection (as a restart does), signing in and ``/healthz`` work
at once. A connection the portal keeps between requests is checked before it is used."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import TEST_PASSWORD

from nccid.web.testing import running_postgres

NCCID = [sys.executable, "-m", "nccid.cli.main"]
pytestmark = pytest.mark.postgres  # a scratch server of its own, in either test run


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _status(opener, request) -> int:
    try:
        with opener.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _sign_in(base: str, username: str) -> int:
    """The sign-in page, then the form posted: the status of the post (302 when signed in)."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect)
    with opener.open(base + "/login/", timeout=30) as page:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    form = urllib.parse.urlencode({"username": username, "password": TEST_PASSWORD,
                                   "csrfmiddlewaretoken": token.group(1)}).encode()
    return _status(opener, urllib.request.Request(base + "/login/", data=form,
                                                  headers={"Referer": base + "/login/"}))


def _healthz(base: str) -> int:
    return _status(urllib.request.build_opener(), base + "/healthz")


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the portal exited before listening"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling interval of a bounded wait, not synchronisation
    raise TimeoutError(f"the portal did not listen on port {port} within {timeout} s")


@pytest.fixture
def postgres():
    with running_postgres() as server:
        yield server


def test_signing_in_and_healthz_work_once_the_database_ended_the_portals_connections(
        nccid_home, postgres):
    main, vault = postgres.create_databases("portal")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCCID_")} | {
        "NCCID_HOME": str(nccid_home), "DATABASE_URL": postgres.url(main),
        "VAULT_DATABASE_URL": postgres.url(vault)}
    run = dict(check=True, capture_output=True, timeout=180, env=env)
    subprocess.run([*NCCID, "init"], **run)
    subprocess.run([*NCCID, "user", "add", "reader1", "--role", "researcher", "--password-stdin"],
                   input=TEST_PASSWORD.encode(), **run)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # One worker with one thread: every request finds the connection the one before kept.
    portal = subprocess.Popen([*NCCID, "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--threads", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_port(port, portal)
        assert _sign_in(base, "reader1") == 302
        assert _healthz(base) == 200
        assert postgres.end_connections(main, vault) >= 1  # the portal kept its connections
        assert _sign_in(base, "reader1") == 302
        postgres.end_connections(main, vault)
        assert _healthz(base) == 200
    finally:
        portal.send_signal(signal.SIGTERM)
        portal.wait(timeout=60)
