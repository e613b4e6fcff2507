"""The encrypted temporaries a process killed mid-write leaves among the waiting images
(``.<sop>.pending.<host>.<pid>.<thread>.tmp``) are named by no row, so no withdrawal could
find them: they are removed once their writer is dead (a process of this host no longer
running), at an import's start and a process's first write; one of another host (or named
before hosts were) once older than any write takes. A live writer's temporary stays."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.config import get_settings
from nccid.imaging import intake
from nccid.synthetic.dicom import synthetic_instance, to_bytes

WRITER = """
import os, sys
folder, host = sys.argv[1], sys.argv[2]
name = os.path.join(folder, f".1.2.826.0.1.9.pending.{host}.{os.getpid()}.140.tmp")
with open(name, "wb") as handle:
    handle.write(b"encrypted bytes")
print(name, flush=True)
sys.stdin.read()  # holds still, mid-write, until killed
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    folder = tmp_path / "pending"
    folder.mkdir()
    settings = dataclasses.replace(get_settings(), pending_dir=folder)
    monkeypatch.setattr(intake, "get_settings", lambda: settings)
    return folder


@pytest.fixture
def writer(folder):
    """A real process of this host with a temporary open in ``folder``."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), intake._HOST],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    path = process.stdout.readline().strip()
    yield process, path
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def _killed(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_killed_writers_temporary_is_removed_and_a_live_ones_kept(folder, writer):
    process, path = writer
    assert intake.sweep_temporaries() == 0
    assert os.path.exists(path)  # its writer runs: it may still rename it into place
    _killed(process)
    assert intake.sweep_temporaries() == 1
    assert not os.path.exists(path)


@pytest.mark.django_db(databases=["default", "vault"])  # (is the folder theirs?)
def test_a_process_s_first_write_sweeps(folder, writer, keyring):
    process, path = writer
    _killed(process)
    intake._swept_folders.discard(folder)
    intake.write_encrypted("1.2.3.pending", b"de-identified bytes", "RTEST", "1.2.3")
    assert sorted(p.name for p in folder.iterdir()) == [intake.MARKER, "1.2.3.pending"]


def test_another_host_s_temporary_goes_once_stale(folder):
    other = folder / ".1.2.826.0.1.7.held.0123abcd.4242.77.tmp"
    older_format = folder / ".1.2.826.0.1.8.pending.4242.77.tmp"
    for path in (other, older_format):
        path.write_bytes(b"encrypted bytes")
    assert intake.sweep_temporaries() == 0
    hours_ago = time.time() - intake.STALE_TEMPORARY - 60
    for path in (other, older_format):
        os.utime(path, (hours_ago, hours_ago))
    assert intake.sweep_temporaries() == 2
    assert list(folder.iterdir()) == []


@pytest.mark.django_db(databases=["default", "vault"])
def test_an_import_starts_by_sweeping(folder, writer, site, local_warehouse, tmp_path,
                                      person_factory):
    process, path = writer
    _killed(process)
    person = person_factory(94)
    source = tmp_path / "in" / "one.dcm"
    source.parent.mkdir()
    source.write_bytes(to_bytes(synthetic_instance(person, patient_id=person.nhs_number)))
    result = CliRunner().invoke(typer_app, ["images", "import", "--site", site.code,
                                            str(source.parent)])
    assert result.exit_code == 0, result.output
    assert not os.path.exists(path)
