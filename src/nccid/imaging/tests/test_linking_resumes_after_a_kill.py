"""Linking is a job that resumes. A clinical import killed (kill -9) while it links the
patient's waiting images leaves them waiting; the next linking pass (``nccid images link``,
and ``nccid images purge-pending``, which links before it deletes) stores each image once,
counts it once on its receipt and leaves no waiting file behind, and the purge never deletes
an image whose clinical record is in."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from nccid.cli.tests.clirun import run_nccid
from nccid.imaging.intake import MARKER
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.people import people

from .conftest import write_study

# Runs ``nccid ARGS`` with one step of linking wrapped: at its third call the process says
# "reached" and waits on stdin, which the test never writes: it is killed there.
_STOPPED = """
import sys
from nccid.cli.common import setup_django
setup_django()
from nccid.imaging import deps, linking

point, args = sys.argv[1], sys.argv[2:]
owner = deps if point == "store_image" else linking
real = getattr(owner, point)
calls = 0


def stop_here():
    print("reached", flush=True)
    sys.stdin.read()


def stopping(*a, **kw):
    global calls
    calls += 1
    if point == "remove_encrypted" and calls == 3:
        stop_here()  # the image is stored and settled; its waiting file not yet removed
    result = real(*a, **kw)
    if point != "remove_encrypted" and calls == 3:
        stop_here()  # right after this step of the third image
    return result


setattr(owner, point, stopping)
sys.argv = ["nccid", *args]
from nccid.cli.main import app
app()
"""

IMAGES = 8


def _db(home) -> sqlite3.Connection:
    return sqlite3.connect(home / "nccid.sqlite3")


def _kill_while_linking(home, tmp_path, point: str, person) -> None:
    env = {"NCCID_HOME": str(home)}
    for args in (["init"], ["site", "add", "RKILL", "--name", "Killed Hospital"]):
        assert run_nccid(*args, env=env).code == 0
    write_study(tmp_path / "images", person, count=IMAGES, plant=False)  # by hospital number
    loner = people(12, seed=7)[11]
    write_study(tmp_path / "images", loner, study=2, count=1, plant=False)  # no record, ever
    imported = run_nccid("images", "import", "--site", "RKILL", str(tmp_path / "images"), env=env)
    assert imported.code == 0, imported.err
    sheet = tmp_path / "positive.csv"
    write_sheet("positive", [person], sheet, fmt="csv")
    script = tmp_path / "stopped.py"
    script.write_text(_STOPPED)
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL", "NCCID_CONFIG")}
    child = subprocess.Popen(
        [sys.executable, str(script), point, "clinical", "import", str(sheet), "--site", "RKILL",
         "--kind", "positive"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**child_env, **env})
    try:
        lines = (line.strip() for line in iter(child.stdout.readline, ""))
        assert "reached" in lines, "the import ended before linking its third image"
    finally:
        child.kill()
        child.wait(timeout=60)
        child.stdout.close()
        child.stdin.close()
    with _db(home) as db:
        assert db.execute("select count(*) from clinical_clinicalrecord").fetchone()[0] == 1
        waiting = db.execute("select count(*) from imaging_pendingimage").fetchone()[0]
    assert waiting >= IMAGES - 3 + 1  # killed mid-link: most still wait (and the loner)


def _assert_all_linked_once(home) -> None:
    with _db(home) as db:
        assert db.execute("select count(*), count(distinct sop_uid) from warehouse_imagerecord"
                          ).fetchone() == (IMAGES, IMAGES)
        receipts = db.execute("select stored, pending, status from imaging_studyreceipt "
                              "where stored > 0 or pending < 0").fetchall()
    assert receipts == [(IMAGES, 0, "stored")]


def _two_hours_later(home) -> None:
    """As if the kill had been two hours ago: the killed linker's claim is stale (taken again
    after 10 minutes) and its leftover file old enough to be removed (after an hour)."""
    then = time.time() - 2 * 3600
    for path in (home / "pending").glob("*.pending"):
        os.utime(path, (then, then))
    with _db(home) as db:
        db.execute("update imaging_pendingimage set claimed_at = '2000-01-01 00:00:00' "
                   "where claimed_at is not null")


@pytest.mark.parametrize("point", ["store_image", "_move_receipt", "remove_encrypted"])
def test_images_left_waiting_by_a_killed_import_are_linked_by_the_next_pass(
        nccid_home, tmp_path, point):
    person = people(11, seed=7)[10]
    _kill_while_linking(nccid_home, tmp_path, point, person)
    _two_hours_later(nccid_home)
    env = {"NCCID_HOME": str(nccid_home)}
    linked = run_nccid("images", "link", env=env)
    assert linked.code == 0, linked.err
    _assert_all_linked_once(nccid_home)
    with _db(nccid_home) as db:
        (loner_file,) = [f for (f,) in db.execute("select file_name from imaging_pendingimage")]
    assert sorted(p.name for p in (nccid_home / "pending").iterdir()) == sorted([MARKER, loner_file])
    again = run_nccid("images", "link", env=env)
    assert "Linked 0 pending image(s)" in again.out
    _assert_all_linked_once(nccid_home)


def test_the_purge_links_expired_images_whose_record_is_in_and_deletes_only_the_rest(
        nccid_home, tmp_path):
    person = people(11, seed=7)[10]
    _kill_while_linking(nccid_home, tmp_path, "store_image", person)
    _two_hours_later(nccid_home)
    with _db(nccid_home) as db:
        db.execute("update imaging_pendingimage set expires_at = '2000-01-01 00:00:00'")
    purged = run_nccid("images", "purge-pending", env={"NCCID_HOME": str(nccid_home)})
    assert purged.code == 0, purged.err
    assert "Purged 1 pending image(s)" in purged.out  # the loner's, which has no record
    _assert_all_linked_once(nccid_home)
    with _db(nccid_home) as db:
        assert db.execute("select count(*) from imaging_pendingimage").fetchone()[0] == 0
        (problem,) = db.execute("select problem from imaging_studyreceipt where rejected = 1"
                                ).fetchone()
    # (the site's sheet came after the loner without it: its Patient ID is what to check)
    assert "Patient ID matched none of the clinical records your site sent" in problem
