"""The whole system end to end, on the data `make run` loads.

`nccid init --demo` imports clinical sheets (NHS numbers, hospital numbers) and DICOM files
(names, birth dates, NHS or hospital numbers in PatientID, original UIDs) for three sites through
the same services the portal, CLI and node use, stores them in the real warehouse and refreshes
the real catalogue. These tests then check what reaches every byte on disk, and what a
researcher can export from it.
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nccid.demo import PATIENTS_PER_SITE, SITES
from nccid.synthetic.dicom import original_uid
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import people


def demo_needles() -> list[str]:
    needles = []
    for site in SITES:
        for person in people(PATIENTS_PER_SITE + 4, seed=site.seed, site_prefix=site.code):
            needles += person.identifiers()
            needles.append(original_uid(person, 1))        # original Study Instance UID
            needles.append(original_uid(person, 1, 1, 1))  # original SOP Instance UID
    return needles


def nccid(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL")}
    env["NCCID_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "nccid.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo") / "home"
    result = nccid(home, "init", "--demo")
    assert result.returncode == 0, result.stderr
    return home, result.stdout + result.stderr


def test_leak_scanner_finds_a_planted_identifier(tmp_path):
    needles = demo_needles()
    (tmp_path / "log.txt").write_bytes(b"... " + needles[0].encode("utf-16-le") + b" ...")
    assert find_leaks([tmp_path], needles) == [f"{tmp_path / 'log.txt'}: {needles[0]}"]


def test_demo_load_leaves_no_identifier_in_any_byte_written_or_printed(demo):
    home, printed = demo
    needles = demo_needles()
    assert find_leaks([home], needles) == []
    assert [n for n in needles if n in printed] == []
    # The scan is not vacuous: the warehouse and databases hold the pseudonymised data.
    assert len(list((home / "warehouse").rglob("*.dcm"))) > 50
    assert (home / "nccid.sqlite3").stat().st_size > 100_000


def test_researcher_export_from_real_warehouse_round_trips_training_only(demo, tmp_path):
    home, _ = demo
    out = tmp_path / "export"
    result = nccid(home, "research", "export", "--user", "researcher", "-o", str(out))
    assert result.returncode == 0, result.stderr

    with open(out / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    dicom_rows = [row for row in manifest if row["key"].endswith(".dcm")]
    assert len(dicom_rows) > 20
    warehouse = home / "warehouse"
    for row in manifest:
        exported = (out / row["key"]).read_bytes()
        assert hashlib.sha256(exported).hexdigest() == row["sha256"]
        assert len(exported) == int(row["size"])
        if row["key"].endswith(".dcm"):  # same bytes as the warehouse object it came from
            assert hashlib.sha256((warehouse / row["key"]).read_bytes()).hexdigest() == row["sha256"]

    # Nothing of the validation set: no key under validation/, and none of its patients.
    assert not any(row["key"].startswith("validation/") for row in manifest)
    validation_patients = {p.name for p in (warehouse / "validation").glob("*/*") if p.is_dir()}
    assert validation_patients, "the demo has a validation-only site"
    exported_patients = {Path(row["key"]).parts[2] for row in dicom_rows}
    assert exported_patients and not (exported_patients & validation_patients)
    assert find_leaks([out], demo_needles()) == []


def test_researcher_cannot_ask_for_the_validation_set(demo):
    home, _ = demo
    result = nccid(home, "research", "cohort", "--user", "researcher", "--site", "VTH")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("0 patients"), result.stdout


def test_each_demo_site_has_an_image_held_for_review(demo):
    """The review queue is not empty in the demo: each site sent one image with a label
    burned into its pixels."""
    home, _ = demo
    result = nccid(home, "images", "held")
    assert result.returncode == 0, result.stderr
    counts = {line.split()[1]: line.split()[3] for line in result.stdout.splitlines()
              if line.startswith("│")}
    assert counts == {site.code: "1" for site in SITES}
