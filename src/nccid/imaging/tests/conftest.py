"""Helpers for the imaging tests: synthetic studies on disk, a real node on a free port."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, process=None) -> None:
    """Poll until something accepts TCP connections on ``port`` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling interval of a bounded wait, not synchronisation
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


def write_study(folder: Path, person, *, study: int = 1, count: int = 3, modality: str = "CT",
                patient_id: str | None = None, plant: bool = True, rows: int = 32, **kw) -> list[Path]:
    """``count`` instances of one study of ``person`` as files under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        ds = synthetic_instance(person, modality=modality, study=study, instance=i, rows=rows,
                                columns=rows, patient_id=patient_id, plant=plant, **kw)
        path = folder / f"{person.family_name}-{study}-{i}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def original_sop(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture
def person_factory():
    """person_factory(index) -> synthetic person number ``index`` (each test uses its own)."""

    def make(index: int):
        return people(index + 1, seed=7)[index]

    return make


class RunningNode:
    """A node started by the ``node`` fixture: its port, and a bounded wait for its drain."""

    def __init__(self, server) -> None:
        self.server = server
        self.port = server.server_address[1]

    def drained(self, timeout: float = 60.0) -> None:
        assert self.server.wait_drained(timeout), (
            f"the spool still holds {self.server.spool_backlog()} after {timeout} s")


@pytest.fixture
def node(transactional_db, site, tmp_path):
    """A real DICOM node in this process on a free port, with its own spool folder."""
    from nccid.imaging.node import start_node

    port = free_port()
    server = start_node("127.0.0.1", port, spool_dir=tmp_path / "node-spool")
    wait_for_port(port)
    yield RunningNode(server)
    server.shutdown()
    server.server_close()


__all__ = ["free_port", "original_sop", "wait_for_port", "write_study", "to_bytes",
           "synthetic_instance"]


@pytest.fixture
def pending_folder(tmp_path, monkeypatch):
    """``pending_dir`` set to a folder of the test's own (not made yet)."""
    from nccid.config import get_settings, reset_settings_cache

    monkeypatch.setenv("NCCID_PENDING_DIR", str(tmp_path / "pending"))
    reset_settings_cache()
    yield get_settings().pending_dir
    monkeypatch.undo()
    reset_settings_cache()
