"""``nccid images import``: folders, files and zips; rejected files named; resumable, even after
the process is killed mid-import."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile

import pytest
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.warehouse.models import ImageRecord

from .conftest import original_sop, write_study

NCCID = [sys.executable, "-m", "nccid.cli.main"]


@pytest.mark.django_db(databases=["default", "vault"])
def test_folder_zip_and_file_import_reports_rejects_and_resumes(site, keyring, tmp_path,
                                                                person_factory):
    a, b, c = person_factory(41), person_factory(42), person_factory(43)
    folder = write_study(tmp_path / "in" / "deep" / "er", a, count=3, patient_id=a.nhs_number)
    zipped = write_study(tmp_path / "z", b, count=2, patient_id=b.nhs_number)
    archive = tmp_path / "in" / "study.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in zipped:
            handle.write(path, f"inside/{path.name}")
    single = write_study(tmp_path / "one", c, count=1, patient_id=c.nhs_number)[0]
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    truncated = tmp_path / "in" / "cut.dcm"
    truncated.write_bytes(folder[0].read_bytes()[:-500])

    result = CliRunner().invoke(typer_app, ["images", "import", "--site", site.code,
                                            str(tmp_path / "in"), str(single)])
    assert result.exit_code == 1  # some files were rejected
    assert "notes.txt" in result.output and "cut.dcm" in result.output
    assert "not a DICOM file" in result.output
    uids = [keyring.uid(original_sop(p)) for p in folder + zipped + [single]]
    assert ImageRecord.objects.filter(sop_uid__in=uids).count() == 6

    truncated.unlink()
    (tmp_path / "in" / "notes.txt").unlink()
    again = CliRunner().invoke(typer_app, ["images", "import", "--site", site.code,
                                           str(tmp_path / "in"), str(single)])
    assert again.exit_code == 0, again.output
    assert "duplicate │ 6" in again.output and "stored    │ 0" in again.output
    assert ImageRecord.objects.filter(sop_uid__in=uids).count() == 6


@pytest.mark.django_db(databases=["default", "vault"])
def test_unknown_site_is_a_user_error(tmp_path):
    result = CliRunner().invoke(typer_app, ["images", "import", "--site", "NOPE", str(tmp_path)])
    assert result.exit_code != 0
    assert "no site with code" in str(result.exception) + result.output


def _count(db_path) -> int:
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return db.execute("select count(*) from warehouse_imagerecord").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_import_killed_midway_then_rerun_stores_every_file_exactly_once(nccid_home, tmp_path,
                                                                         person_factory):
    corpus = tmp_path / "corpus"
    total = 0
    for i in range(12):
        person = person_factory(50 + i)
        total += len(write_study(corpus / str(i), person, count=10, rows=256,
                                 patient_id=person.nhs_number, plant=False))
    run = dict(check=True, capture_output=True, timeout=180)
    subprocess.run([*NCCID, "init"], **run)
    subprocess.run([*NCCID, "site", "add", "KILL", "--name", "Kill Test Hospital"], **run)
    db_path = nccid_home / "nccid.sqlite3"

    importer = subprocess.Popen([*NCCID, "images", "import", "--site", "KILL", str(corpus)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _count(db_path) < 10 and importer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # polling interval of a bounded wait
    importer.send_signal(signal.SIGKILL)
    importer.wait(timeout=30)
    assert importer.returncode == -signal.SIGKILL
    stored_before = _count(db_path)
    assert 10 <= stored_before < total  # killed in the middle of the import

    rerun = subprocess.run([*NCCID, "images", "import", "--site", "KILL", str(corpus)],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    with sqlite3.connect(db_path) as db:
        rows = db.execute("select sop_uid, storage_key, sha256 from warehouse_imagerecord").fetchall()
    assert len(rows) == total and len({r[0] for r in rows}) == total
    warehouse = nccid_home / "warehouse"
    for _, key, digest in rows:
        assert hashlib.sha256((warehouse / key).read_bytes()).hexdigest() == digest
    assert len(list(warehouse.rglob("*.dcm"))) == total
