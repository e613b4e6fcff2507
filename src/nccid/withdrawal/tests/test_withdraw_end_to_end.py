"""End to end through the CLI, as a data manager would: a patient's sheet and images arrive,
a researcher exports them, the patient is withdrawn by NHS number; then every byte of the
warehouse and catalogue, every row of the main database and every byte of the vault is
scanned for what named them, and sending them again is refused."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from nccid.clinical.tests.helpers import sheet_of
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import people

from ..services import REFUSAL
from .conftest import synthetic_instance, to_bytes

NCCID = [sys.executable, "-m", "nccid.cli.main"]
PASSWORD = "Withdrawal-Test-Password-7"
# Tables that keep a withdrawn patient's pseudonym, and why: the withdrawal list (to refuse
# them), the audit log, the site-scoped hospital-number links (to recognise them), the
# sites' receipts (emptied, marked removed) and the patient's set (a reinstated patient
# returns to it). Nothing else may name them.
KEEPS_PSEUDONYM = {"withdrawal_withdrawal", "accounts_auditevent", "clinical_patientlink",
                   "imaging_studyreceipt", "warehouse_keptset"}


def _cli(*args, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*NCCID, *args], input=stdin, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "COLUMNS": "300"})  # Rich wraps no message
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _write_study(folder, person, study: int) -> None:
    folder.mkdir(parents=True)
    for i in range(1, 4):
        ds = synthetic_instance(person, modality="DX", study=study, instance=i,
                                patient_id=person.nhs_number)
        (folder / f"{i}.dcm").write_bytes(to_bytes(ds))


def _rows_naming(db_path, text: str) -> dict[str, int]:
    """Table -> rows with a text column holding ``text``, over every table of the database."""
    db = sqlite3.connect(db_path)
    found = {}
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        columns = [c[1] for c in db.execute(f'PRAGMA table_info("{table}")')]
        where = " OR ".join(f'CAST("{c}" AS TEXT) LIKE ?' for c in columns)
        count = db.execute(f'SELECT count(*) FROM "{table}" WHERE {where}',
                           [f"%{text}%"] * len(columns)).fetchone()[0]
        if count:
            found[table] = count
    db.close()
    return found


def _query(db_path, sql: str, *params):
    db = sqlite3.connect(db_path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def test_a_patient_withdrawn_by_nhs_number_leaves_no_trace_and_is_refused_after(nccid_home, tmp_path):
    gone, kept = people(2, seed=21)
    _cli("init")
    _cli("site", "add", "WDRW", "--name", "Withdrawal Test Hospital", "--ae-title", "WDRW_PACS",
         "--split", "training")
    _cli("user", "add", "manager", "--role", "data-manager", "--password-stdin", stdin=PASSWORD + "\n")
    _cli("user", "add", "reader", "--role", "researcher", "--research-set", "training",
         "--password-stdin", stdin=PASSWORD + "\n")
    # a long-lived reader of the vault, as a running portal or node is: SQLite then keeps the
    # write-ahead log (and the pages it held) between the commands
    reader = sqlite3.connect(nccid_home / "vault.sqlite3")
    reader.execute("SELECT count(*) FROM identity_vaultentry").fetchall()
    sheet = tmp_path / "positive.xlsx"
    sheet.write_bytes(sheet_of("positive", [{"age": 61, "sex": 1}, {"age": 44, "sex": 2}], [gone, kept]))
    _cli("clinical", "import", "--site", "WDRW", "--kind", "positive", str(sheet))
    _write_study(tmp_path / "images" / "gone", gone, 1)
    _write_study(tmp_path / "images" / "kept", kept, 2)
    _cli("images", "import", "--site", "WDRW", str(tmp_path / "images"))
    _cli("warehouse", "catalogue")
    _cli("research", "export", "--user", "reader", "-o", str(tmp_path / "export"), "--format", "parquet")

    db, vault = nccid_home / "nccid.sqlite3", nccid_home / "vault.sqlite3"
    [(pseudonym,)] = _query(db, "SELECT DISTINCT pseudonym FROM clinical_clinicalrecord WHERE "
                                "json_extract(cleaned, '$.age') = 61")
    [(kept_pseudonym,)] = _query(db, "SELECT DISTINCT pseudonym FROM clinical_clinicalrecord WHERE "
                                     "pseudonym != ?", pseudonym)
    uids = [u for row in _query(db, "SELECT study_uid, series_uid, sop_uid FROM warehouse_imagerecord "
                                    "WHERE pseudonym = ?", pseudonym) for u in row]
    [(ciphertext,)] = _query(vault, "SELECT ciphertext FROM identity_vaultentry WHERE pseudonym = ?",
                             pseudonym)
    warehouse = nccid_home / "warehouse"
    assert len(uids) == 9 and find_leaks([warehouse], [pseudonym, *uids])  # really there before
    assert ciphertext in vault.read_bytes() + (vault.with_name(vault.name + "-wal").read_bytes()
                                               if vault.with_name(vault.name + "-wal").exists() else b"")

    shown = _cli("patient", "show", gone.nhs_number, "--user", "manager", "--password-stdin",
                 stdin=PASSWORD + "\n")
    assert pseudonym in shown.stdout and "research.export" in shown.stdout and "reader" in shown.stdout
    assert gone.nhs_number not in shown.stdout + shown.stderr
    refused = _cli("patient", "withdraw", gone.nhs_number, "--reason", "Patient objected (ref 7)",
                   "--user", "manager", "--password-stdin", stdin=PASSWORD + "\nn\n", check=False)
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr  # answered no
    assert _query(db, "SELECT count(*) FROM withdrawal_withdrawal") == [(0,)]
    done = _cli("patient", "withdraw", gone.nhs_number, "--reason", "Patient objected (ref 7)",
                "--user", "manager", "--password-stdin", "--yes", stdin=PASSWORD + "\n")
    assert "removed 3 images, 1 clinical record," in done.stdout
    assert gone.nhs_number not in done.stdout + done.stderr

    # warehouse and catalogue: no byte names the patient, their images or their UIDs
    leaks = find_leaks([warehouse], [pseudonym, *uids])
    assert not leaks, "\n".join(leaks)
    assert find_leaks([warehouse], [kept_pseudonym])  # the other patient is still there
    # main database: only the tables that must keep the pseudonym name it
    assert set(_rows_naming(db, pseudonym)) <= KEEPS_PSEUDONYM
    assert _rows_naming(db, pseudonym)["withdrawal_withdrawal"] == 1
    for uid in uids[2::3]:  # SOP Instance UIDs: only as instances counted refused (keyed, as
        # researchers saw them), so that one sent again is not counted twice in its receipt
        assert _rows_naming(db, uid) == {"imaging_refusedinstance": 1}
    # vault: the entry and its bytes are gone (file and write-ahead log)
    assert _query(vault, "SELECT count(*) FROM identity_vaultentry WHERE pseudonym = ?", pseudonym) == [(0,)]
    wal = vault.with_name(vault.name + "-wal")
    assert ciphertext not in vault.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert _query(vault, "SELECT count(*) FROM identity_vaultentry") == [(1,)]
    reader.close()

    # sending the patient again: images refused with the reason, the sheet's row refused
    again = _cli("images", "import", "--site", "WDRW", str(tmp_path / "images" / "gone"), check=False)
    assert REFUSAL in again.stdout + again.stderr
    assert _query(db, "SELECT count(*) FROM warehouse_imagerecord WHERE pseudonym = ?", pseudonym) == [(0,)]
    sheet_again = _cli("clinical", "import", "--site", "WDRW", "--kind", "positive", str(sheet), check=False)
    assert sheet_again.returncode == 2, sheet_again.stdout + sheet_again.stderr  # some rows rejected
    assert "withdrawn from the database" in sheet_again.stdout + sheet_again.stderr
    assert _query(db, "SELECT count(*) FROM clinical_clinicalrecord WHERE pseudonym = ?", pseudonym) == [(0,)]
    assert _query(vault, "SELECT count(*) FROM identity_vaultentry WHERE pseudonym = ?", pseudonym) == [(0,)]
    listed = _cli("patient", "withdrawn", "--user", "manager", "--password-stdin", stdin=PASSWORD + "\n")
    assert pseudonym in listed.stdout and "complete" in listed.stdout

    # one study of the other patient removed (an identifier found in an image): named by the
    # UID the site sent, it goes from every byte of the warehouse; the patient's record stays
    [(study_uid,)] = _query(db, "SELECT DISTINCT study_uid FROM warehouse_imagerecord")
    original = str(synthetic_instance(kept, modality="DX", study=2, instance=1,
                                      patient_id=kept.nhs_number).StudyInstanceUID)
    removed = _cli("study", "remove", original, "--reason", "Name burned in (report 9)", "--user",
                   "manager", "--password-stdin", "--yes", stdin=PASSWORD + "\n")
    assert f"Removed study {study_uid}: 3 images" in removed.stdout
    assert not find_leaks([warehouse], [study_uid])
    assert find_leaks([warehouse], [kept_pseudonym])  # the clinical record's JSON
