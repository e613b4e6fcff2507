"""An export killed mid-way (a worker SIGKILLed, a restart past the grace period) cannot
remove its staging folder, which holds the cohort's data: the next process start (a gunicorn
worker replacing the killed one runs the apps' ready()) or the next export sweeps it, while a
live export's folder is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile

import pytest
from django.apps import apps

from nccid.config import get_settings
from nccid.research import staging

# A real export in another process, in the portal's staging folder, stopped after its first
# image: it says so on stdout and waits on stdin for ever (until killed).
EXPORTER = """
import sys
from pathlib import Path
from nccid.research.cohort import Cohort, CohortFilter
from nccid.research.export import write_export
from nccid.research.source import Source
from nccid.research.staging import staging_folder, staging_root
from nccid.research.tests.world import DirWarehouse, connect

root = Path(sys.argv[1])
source = Source(connect=lambda: connect(root / "catalogue"), warehouse=DirWarehouse(root / "warehouse"))

def stop_after_the_first_image(done, total):
    print("copying", flush=True)
    sys.stdin.readline()

with staging_folder(staging_root()) as folder:
    write_export(Cohort(CohortFilter(), ("training",), source), folder / "cohort.zip",
                 ("csv", "dicom"), stop_after_the_first_image)
"""


@pytest.fixture
def exporter(world):
    process = subprocess.Popen([sys.executable, "-c", EXPORTER, str(world.root)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "NCCID_HOME": str(get_settings().home)})
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def left_in(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_killed_exports_staging_folder_is_swept_and_a_live_ones_kept(exporter):
    root = staging.staging_root()
    assert exporter.stdout.readline() == "copying\n"
    files = left_in(root)
    assert files, "the export stages its data in the portal's staging folder"

    # Alive: another export's sweep, or a process starting, leaves it alone.
    assert staging.sweep(root) == []
    assert left_in(root) == files

    exporter.send_signal(signal.SIGKILL)
    exporter.wait()
    # What was left: the cohort's tables, already written into the partial zip.
    [partial] = [f for f in left_in(root) if f.name == "export.zip"]
    assert b"images.csv" in partial.read_bytes()

    apps.get_app_config("research").ready()  # what a replacement worker does as it starts
    assert list(root.iterdir()) == []


def test_an_export_sweeps_its_destination_folder_of_killed_exports(tmp_path, world, researcher,
                                                                   db):
    """The command line builds beside its destination: a killed export's folder there goes
    at the next export into that folder; a user's own folders and files stay."""
    from nccid.research.cohort import CohortFilter
    from nccid.research.export import export_cohort

    dead = tmp_path / f"{staging.PREFIX}abcd1234"  # nobody holds it: its process is gone
    (dead / "tree").mkdir(parents=True)
    (dead / "tree" / "images.csv").write_text("pseudonym\nNCCID-AAAA\n")
    mine = tmp_path / ".partial-mine"
    mine.mkdir()
    export_cohort(researcher, CohortFilter(), tmp_path / "cohort.zip", ("csv",), world.source())
    assert not dead.exists() and mine.exists()
    with zipfile.ZipFile(tmp_path / "cohort.zip") as zf:
        assert "images.csv" in zf.namelist()
