"""A process killed mid-batch (kill -9) leaves its temporaries (``.tmp-<writer>-<n>``) in the
series folders it was writing. Its journal (``.nccid-writing/<writer>``, locked while it ran)
names those folders: the next process to write removes them at its start, though it never
writes into those folders (a re-run skips what is stored). A live writer's temporaries stay,
another host's until they are older than any write takes, and objects are never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse import storage
from nccid.warehouse.storage import STALE_TEMPORARY, TEMP_PREFIX, WRITING_FOLDER, Warehouse

NCCID = [sys.executable, "-m", "nccid.cli.main"]

WRITER = """
import sys
from nccid.warehouse.storage import Warehouse
batch = Warehouse(sys.argv[1]).batch()
batch.put("training/ct/P1/s1/1.dcm", b"d" * 100_000)
batch.digests()
print("written", flush=True)
sys.stdin.read()  # holds still, its temporaries written, until killed
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def _killed_writer(root: Path, writer: str, folders: list[str]) -> list[Path]:
    """What a writer named ``writer`` killed mid-batch leaves: its journal naming ``folders``,
    and a temporary in each."""
    (root / WRITING_FOLDER).mkdir(parents=True, exist_ok=True)
    (root / WRITING_FOLDER / writer).write_text("".join(f"{f}\n" for f in folders))
    left = []
    for number, folder in enumerate(folders):
        (root / folder).mkdir(parents=True, exist_ok=True)
        temporary = root / folder / f"{TEMP_PREFIX}{writer}-{number}"
        temporary.write_bytes(b"half an image")
        left.append(temporary)
    return left


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"{TEMP_PREFIX}*"))


def _journals(root: Path) -> list[str]:
    return sorted(os.listdir(root / WRITING_FOLDER))


@pytest.mark.parametrize("first_write", ["write_atomic", "batch"])
def test_a_dead_writer_s_temporaries_go_at_the_next_writer_s_start(tmp_path, first_write):
    root = tmp_path / "warehouse"
    dead = f"{storage._HOST}-{_dead_pid()}-{'0a' * 6}"
    left = _killed_writer(root, dead, ["training/ct/P1/s1", "validation/dx/P2/s2"])
    stored = root / "training" / "ct" / "P1" / "s1" / "1.dcm"
    stored.write_bytes(b"an image stored before")
    older_format = root / "training" / "ct" / "P1" / "s1" / f"{TEMP_PREFIX}4242-0"
    older_format.write_bytes(b"named by no journal, and new")

    warehouse = Warehouse(str(root))
    if first_write == "write_atomic":  # (in a folder the killed writer never wrote into)
        warehouse.write_atomic("catalogue/state.json", b"{}")
    else:
        warehouse.write_many({"training/dx/P3/s3/1.dcm": b"x", "training/dx/P3/s3/2.dcm": b"y"})

    assert not any(path.exists() for path in left)
    assert _journals(root) == [storage._writer_name()]  # the dead writer's journal is gone
    assert stored.read_bytes() == b"an image stored before"
    assert older_format.exists()  # another writer's, young: left to the hour rule
    assert all("/." not in f"/{key}" for key in warehouse.list(""))  # journals are no objects


def test_a_live_writer_s_temporaries_stay_until_it_is_killed(tmp_path):
    root = tmp_path / "warehouse"
    warehouse = Warehouse(str(root))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "written\n"
        theirs = _temporaries(root)
        assert len(theirs) == 1

        ours = warehouse.batch()  # this process's own batch, open meanwhile
        ours.put("training/ct/P1/s1/2.dcm", b"ours")
        ours.digests()
        assert warehouse.sweep_temporaries() == 0
        assert len(_temporaries(root)) == 2  # both writers run: both may still publish

        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        assert warehouse.sweep_temporaries() == 1
        assert not theirs[0].exists() and len(_temporaries(root)) == 1  # ours stays
        assert _journals(root) == [storage._writer_name()]
        ours.publish()
        assert _temporaries(root) == []
        assert warehouse.read("training/ct/P1/s1/2.dcm") == b"ours"
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)


def test_another_host_s_temporaries_stay_until_old(tmp_path):
    root = tmp_path / "warehouse"
    other = "0123abcd" if storage._HOST != "0123abcd" else "4567cdef"
    writer = f"{other}-4242-{'0b' * 6}"
    left = _killed_writer(root, writer, ["training/ct/P1/s1"])
    warehouse = Warehouse(str(root))
    assert warehouse.sweep_temporaries() == 0  # its lock may not reach this host

    hours_ago = time.time() - STALE_TEMPORARY - 60
    os.utime(root / WRITING_FOLDER / writer, (hours_ago, hours_ago))
    assert warehouse.sweep_temporaries() == 0  # its temporary is young: it may be writing
    assert left[0].exists() and _journals(root) == [writer]

    os.utime(left[0], (hours_ago, hours_ago))
    assert warehouse.sweep_temporaries() == 1
    assert not left[0].exists() and _journals(root) == []


def test_a_journal_names_only_folders_of_the_warehouse(tmp_path):
    root = tmp_path / "warehouse"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    dead = f"{storage._HOST}-{_dead_pid()}-{'0c' * 6}"
    bait = outside / f"{TEMP_PREFIX}{dead}-0"
    bait.write_bytes(b"not the warehouse's")
    _killed_writer(root, dead, [])
    (root / WRITING_FOLDER / dead).write_text("../elsewhere\n/tmp\n")
    assert Warehouse(str(root)).sweep_temporaries() == 0
    assert bait.exists()


def test_an_import_killed_mid_batch_leaves_no_temporaries_after_its_re_run(nccid_home, tmp_path):
    """A real ``nccid images import``, killed once its first batch's temporaries are written
    (its publish held), then run again."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, person in enumerate(people(3, seed=11)):
        for instance in (1, 2):
            ds = synthetic_instance(person, modality="CT", instance=instance, rows=64,
                                    columns=64, patient_id=person.nhs_number, plant=False)
            (corpus / f"{index}-{instance}.dcm").write_bytes(to_bytes(ds))
    run = dict(check=True, capture_output=True, timeout=180)
    subprocess.run([*NCCID, "init"], **run)
    subprocess.run([*NCCID, "site", "add", "KILL", "--name", "Kill Test Hospital"], **run)
    warehouse = nccid_home / "warehouse"
    held = ("import sys\nfrom nccid.warehouse import storage\n"
            "def held(path):\n    print('written', flush=True)\n    sys.stdin.read()\n"
            "storage.sync_filesystem = held\n"
            "from nccid.cli.main import app\nsys.argv = ['nccid', *sys.argv[1:]]\napp()\n")
    importer = subprocess.Popen([sys.executable, "-c", held, "images", "import", "--site",
                                 "KILL", str(corpus)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "written\n" in iter(importer.stdout.readline, "")  # (or the import ended)
    finally:
        importer.send_signal(signal.SIGKILL)
        importer.wait(timeout=30)
    assert _temporaries(warehouse)  # the killed batch's, in its series folders
    assert len(_journals(warehouse)) == 1

    rerun = subprocess.run([*NCCID, "images", "import", "--site", "KILL", str(corpus)],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _temporaries(warehouse) == []
    assert _journals(warehouse) == []  # the re-run's own is removed as it exits
    assert len(list(warehouse.rglob("*.dcm"))) == 6
