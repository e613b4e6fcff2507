"""End to end through the CLI in a fresh NCCID_HOME: exit codes, and no identifier in any byte
of the databases, the warehouse or the logs afterwards."""

import datetime as dt
import os
import subprocess
import sys

from nccid.clinical.schema import get_template
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import people, spaced

from .helpers import template_row, xlsx_bytes


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


def _planted_sheet(path, persons, hospitals: list[str], hospital_numbers: bool = True) -> None:
    """A positive sheet of ``persons`` with these Hospital cells, whose headers, beyond the
    template's, hold a name, a birth date (a date cell), a hospital number, "DOB <date>" and an
    NHS number (of ``persons[4]`` and ``persons[5]``, who are in no row)."""
    template = get_template("positive")
    planted = [f"{persons[4].given_name} {persons[4].family_name}",
               dt.datetime.combine(persons[5].birth_date, dt.time()), persons[5].hospital_number,
               f"DOB {persons[4].birth_date:%d/%m/%Y}", persons[5].nhs_number]
    rows = [template_row(template, person, {"age": 50, "hospital": hospital}
                         | ({} if hospital_numbers else {"hospital_number": None})) + ["x"] * 5
            for person, hospital in zip(persons, hospitals, strict=False)]
    path.write_bytes(xlsx_bytes(template.headers + planted, rows))


def test_cli_import_keeps_no_planted_header_nor_another_patients_hospital_number(nccid_home, tmp_path):
    """Headers the template lacks are named by letter; a Hospital cell holding another row's
    hospital number, one of the same form, or one the site already links is refused."""
    assert nccid("init").returncode == 0
    assert nccid("site", "add", "RPRIV", "--name", "Privacy Test Hospital").returncode == 0
    persons = people(6, seed=13)
    first, second = tmp_path / "first.xlsx", tmp_path / "second.xlsx"
    _planted_sheet(first, persons, [persons[1].hospital_number, f"seen at {persons[5].hospital_number}",
                                    f"Ward 4 {persons[0].hospital_number}", "Royal Example"])
    # Without hospital numbers only the site's links recognise one: row 5 above was accepted.
    _planted_sheet(second, persons, [f"see {persons[3].hospital_number}", "Royal Example"],
                   hospital_numbers=False)
    results = [nccid("clinical", "import", "--site", "RPRIV", "--kind", "positive", str(f))
               for f in (first, second)]
    assert [r.returncode for r in results] == [2, 2], [r.stdout + r.stderr for r in results]
    assert all("column BJ is not part of" in r.stdout for r in results)
    needles = needles_for(persons) + [p.birth_date.isoformat() for p in persons] + [
        f"{p.birth_date:%d/%m/%Y}" for p in persons]
    assert find_leaks([nccid_home], needles) == []
    outputs = "".join(r.stdout + r.stderr for r in results)
    assert [n for n in needles if n in outputs] == []


def test_cli_import_refuses_an_unknown_site(nccid_home, tmp_path):
    assert nccid("init").returncode == 0
    sheet = tmp_path / "s.xlsx"
    write_sheet("positive", people(2, seed=12), sheet)
    result = nccid("clinical", "import", "--site", "NOPE", "--kind", "positive", str(sheet))
    assert result.returncode == 1 and "no site with code 'NOPE'" in result.stderr
    assert "Traceback" not in result.stderr
