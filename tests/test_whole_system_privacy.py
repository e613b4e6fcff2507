"""The whole system, as `make run` loads it, writes no identifier of any demo patient anywhere.

`nccid init --demo` imports clinical sheets (NHS numbers, hospital numbers) and DICOM files
(names, birth dates, NHS or hospital numbers in PatientID, original UIDs) for three sites through
the same services the portal, CLI and node use. Then every byte under NCCID_HOME (databases,
vault, warehouse, catalogue, pending images, logs) and everything printed is scanned.
"""

from __future__ import annotations

import subprocess
import sys

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


def test_leak_scanner_finds_a_planted_identifier(tmp_path):
    needles = demo_needles()
    (tmp_path / "log.txt").write_bytes(b"... " + needles[0].encode("utf-16-le") + b" ...")
    assert find_leaks([tmp_path], needles) == [f"{tmp_path / 'log.txt'}: {needles[0]}"]


def test_demo_load_leaves_no_identifier_in_any_byte_written_or_printed(nccid_home):
    result = subprocess.run([sys.executable, "-m", "nccid.cli.main", "init", "--demo"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr

    needles = demo_needles()
    assert find_leaks([nccid_home], needles) == []
    printed = result.stdout + result.stderr
    assert [n for n in needles if n in printed] == []
    # The scan is not vacuous: the warehouse and databases hold the pseudonymised data.
    assert len(list((nccid_home / "warehouse").rglob("*.dcm"))) > 50
    assert (nccid_home / "nccid.sqlite3").stat().st_size > 100_000
