"""End to end through the CLI in a fresh NCCID_HOME: exit codes, and no identifier in any byte
of the databases, the warehouse or the logs afterwards."""

import os
import subprocess
import sys

from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import people, spaced


def nccid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nccid.cli.main", *args], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))


def needles_for(persons) -> list[str]:
    found = []
    for person in persons:
        found += [person.nhs_number, spaced(person.nhs_number), person.hospital_number, person.family_name]
        # the planted invalid numbers differ from the real one in the check digit
        found += [person.nhs_number[:9] + str(d) for d in range(10)]
    return found


def test_cli_import_exit_codes_and_no_identifier_anywhere(nccid_home, tmp_path):
    assert nccid("init").returncode == 0
    assert nccid("site", "add", "RPRIV", "--name", "Privacy Test Hospital").returncode == 0
    persons = people(30, seed=11)
    # A file name that carries a patient's name must not be stored anywhere.
    named = tmp_path / f"{persons[0].family_name}-positive.xlsx"
    planted = write_sheet("positive", persons[:20], named, errors=4, seed=11)
    negative = tmp_path / "negative.csv"
    write_sheet("negative", persons[20:], negative, fmt="csv", seed=11)
    isaric = tmp_path / "isaric.xlsx"
    write_sheet("isaric", persons[:10], isaric, seed=11)
    refused = tmp_path / "notes.csv"
    refused.write_text("just a note\n")

    some_rejected = nccid("clinical", "import", "--site", "RPRIV", "--kind", "positive", str(named))
    assert some_rejected.returncode == 2, some_rejected.stderr
    assert "accepted" in some_rejected.stdout and f"{len(planted)} errors" in some_rejected.stdout
    all_accepted = nccid("clinical", "import", "--site", "RPRIV", "--kind", "negative", str(negative))
    assert all_accepted.returncode == 0, all_accepted.stdout + all_accepted.stderr
    assert nccid("clinical", "import", "--site", "RPRIV", "--kind", "isaric", str(isaric)).returncode == 0
    whole_file = nccid("clinical", "import", "--site", "RPRIV", "--kind", "positive", str(refused))
    assert whole_file.returncode == 1 and "File refused" in whole_file.stdout
    again = nccid("clinical", "import", "--site", "RPRIV", "--kind", "positive", str(named))
    assert again.returncode == 2 and "unchanged" in again.stdout

    needles = needles_for(persons)
    assert (nccid_home / "nccid.sqlite3").exists() and (nccid_home / "vault.sqlite3").exists()
    assert (nccid_home / "logs" / "nccid.log").exists()
    assert find_leaks([nccid_home], needles) == []
    outputs = "".join(r.stdout + r.stderr for r in (some_rejected, all_accepted, whole_file, again))
    assert [n for n in needles if n in outputs] == []


def test_cli_import_refuses_an_unknown_site(nccid_home, tmp_path):
    assert nccid("init").returncode == 0
    sheet = tmp_path / "s.xlsx"
    write_sheet("positive", people(2, seed=12), sheet)
    result = nccid("clinical", "import", "--site", "NOPE", "--kind", "positive", str(sheet))
    assert result.returncode == 1 and "no site with code 'NOPE'" in result.stderr
    assert "Traceback" not in result.stderr
