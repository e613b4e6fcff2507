"""Both databases backed up (README "Upgrading" step 2), a patient withdrawn, the backup
restored: the warehouse's marker of the withdrawal (``withdrawn/<pseudonym>.json``) is not
restored with them, so verify fails naming ``nccid init``, the repairs it used to suggest
(sync-clinical, a catalogue refresh) write nothing of the patient back, intake refuses them,
and ``nccid init`` re-applies the withdrawal. Through the CLI, on SQLite files, as an
operator would."""

from __future__ import annotations

import shutil

from nccid.clinical.tests.helpers import sheet_of
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import people

from ..services import REFUSAL
from .test_withdraw_end_to_end import PASSWORD, _cli, _query, _write_study

DATABASES = ("nccid.sqlite3", "vault.sqlite3")


def _back_up(home, backup) -> None:
    backup.mkdir()
    for name in DATABASES:
        shutil.copy2(home / name, backup / name)


def _restore(home, backup) -> None:
    for name in DATABASES:
        for leftover in (f"{name}-wal", f"{name}-shm"):  # of the databases being replaced
            (home / leftover).unlink(missing_ok=True)
        shutil.copy2(backup / name, home / name)


def _patient_objects(warehouse, pseudonym: str) -> list[str]:
    """Objects naming the patient in the sets' folders (the marker is outside them)."""
    return sorted(str(p.relative_to(warehouse)) for p in warehouse.rglob(f"*{pseudonym}*")
                  if p.is_file() and not p.relative_to(warehouse).parts[0] == "withdrawn")


def _site_with_two_patients(tmp_path, gone, kept):
    """An installation with a site, a data manager and both patients' clinical records (61
    years old: ``gone``)."""
    _cli("init")
    _cli("site", "add", "RSTR", "--name", "Restore Test Hospital", "--ae-title", "RSTR_PACS",
         "--split", "training")
    _cli("user", "add", "manager", "--role", "data-manager", "--password-stdin", stdin=PASSWORD + "\n")
    sheet = tmp_path / "positive.xlsx"
    sheet.write_bytes(sheet_of("positive", [{"age": 61, "sex": 1}, {"age": 44, "sex": 2}], [gone, kept]))
    _cli("clinical", "import", "--site", "RSTR", "--kind", "positive", str(sheet))


def test_restoring_the_databases_keeps_the_patient_withdrawn(nccid_home, tmp_path):
    gone, kept = people(2, seed=23)
    _site_with_two_patients(tmp_path, gone, kept)
    _write_study(tmp_path / "images" / "gone", gone, 1)
    _write_study(tmp_path / "images" / "kept", kept, 2)
    _cli("images", "import", "--site", "RSTR", str(tmp_path / "images"))
    _cli("warehouse", "catalogue")
    db, warehouse = nccid_home / "nccid.sqlite3", nccid_home / "warehouse"
    [(pseudonym,)] = _query(db, "SELECT DISTINCT pseudonym FROM clinical_clinicalrecord WHERE "
                                "json_extract(cleaned, '$.age') = 61")

    _back_up(nccid_home, tmp_path / "backup")
    _cli("patient", "withdraw", gone.nhs_number, "--reason", "Patient objected (ref 9)",
         "--user", "manager", "--password-stdin", "--yes", stdin=PASSWORD + "\n")
    assert (warehouse / "withdrawn" / f"{pseudonym}.json").is_file()
    assert not _patient_objects(warehouse, pseudonym)
    _restore(nccid_home, tmp_path / "backup")
    assert _query(db, "SELECT count(*) FROM withdrawal_withdrawal") == [(0,)]  # really forgotten

    # verify says so first, and counts nothing of the patient as a hole to repair
    verified = _cli("warehouse", "verify", "--all", check=False)
    assert verified.returncode == 1
    assert (f"the database lacks 1 withdrawal(s) the warehouse records ({pseudonym})"
            in verified.stdout)
    assert "Run 'nccid init' to re-apply them" in verified.stdout
    assert "sync-clinical" not in verified.stdout and "have no JSON" not in verified.stdout

    # the repairs it used to suggest write nothing of the patient back
    _cli("warehouse", "sync-clinical")
    assert not _patient_objects(warehouse, pseudonym)
    # intake refuses the patient although the restored list does not name them
    _write_study(tmp_path / "later" / "gone", gone, 3)
    _cli("images", "import", "--site", "RSTR", str(tmp_path / "later"), check=False)
    assert _query(db, "SELECT stored, problem FROM imaging_studyreceipt WHERE problem = ?",
                  REFUSAL) == [(0, REFUSAL)]
    assert not _patient_objects(warehouse, pseudonym)

    # init re-applies the withdrawal: the rows and vault entry the backup brought back go
    init = _cli("init")
    assert f"re-applied {pseudonym}" in init.stdout
    assert _query(db, "SELECT requested_by, completed_at IS NOT NULL FROM withdrawal_withdrawal "
                      "WHERE pseudonym = ?", pseudonym) == [("system", 1)]
    assert _query(db, "SELECT count(*) FROM clinical_clinicalrecord WHERE pseudonym = ?",
                  pseudonym) == [(0,)]
    assert _query(nccid_home / "vault.sqlite3", "SELECT count(*) FROM identity_vaultentry "
                                                "WHERE pseudonym = ?", pseudonym) == [(0,)]
    assert not find_leaks([warehouse / "catalogue", warehouse / "training"], [pseudonym])
    assert _cli("warehouse", "verify", "--all").returncode == 0


def test_a_catalogue_refresh_reapplies_it_too(nccid_home, tmp_path):
    """The cron job's refresh, run before anyone reads verify: the sweep re-applies it."""
    gone, kept = people(2, seed=29)
    _site_with_two_patients(tmp_path, gone, kept)
    _cli("warehouse", "catalogue")
    db, warehouse = nccid_home / "nccid.sqlite3", nccid_home / "warehouse"
    [(pseudonym,)] = _query(db, "SELECT DISTINCT pseudonym FROM clinical_clinicalrecord WHERE "
                                "json_extract(cleaned, '$.age') = 61")
    _back_up(nccid_home, tmp_path / "backup")
    _cli("patient", "withdraw", pseudonym, "--reason", "Patient objected (ref 9)",
         "--user", "manager", "--password-stdin", "--yes", stdin=PASSWORD + "\n")
    _restore(nccid_home, tmp_path / "backup")

    _cli("warehouse", "catalogue")
    assert _query(db, "SELECT requested_by FROM withdrawal_withdrawal WHERE pseudonym = ?",
                  pseudonym) == [("system",)]
    assert _query(db, "SELECT count(*) FROM clinical_clinicalrecord WHERE pseudonym = ?",
                  pseudonym) == [(0,)]
    assert not find_leaks([warehouse / "catalogue", warehouse / "training"], [pseudonym])
