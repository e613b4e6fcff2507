"""Both databases backed up, one study removed (a name burned into an image), the backup
restored: the warehouse's marker of the removal (``withdrawn/studies/<StudyUID>.json``) is not
restored with them, so verify fails naming ``nccid init`` and asks for no repair that would
have the site send the study again, intake refuses the study, and ``nccid init`` (or the
next catalogue refresh) re-applies the removal. Through the CLI, on SQLite files, as an
operator would."""

from __future__ import annotations

from nccid.clinical.tests.helpers import sheet_of
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import people

from ..services import STUDY_REFUSAL, STUDY_REMOVED
from .conftest import synthetic_instance, to_bytes
from .test_a_database_restored_from_before_a_withdrawal_does_not_undo_it import _back_up, _restore
from .test_withdraw_end_to_end import PASSWORD, _cli, _query

BAD, GOOD = 1, 2  # the person's two studies: the first shows a name and is removed


def _write_study(folder, person, study: int, instances=(1, 2, 3)) -> None:
    folder.mkdir(parents=True)
    for i in instances:
        ds = synthetic_instance(person, modality="DX", study=study, instance=i,
                                patient_id=person.nhs_number)
        (folder / f"{i}.dcm").write_bytes(to_bytes(ds))


def _installation(tmp_path):
    """One patient of site RSTR with two studies, catalogued; the person and the original
    (as sent) UID of the study to remove."""
    (person,) = people(1, seed=31)
    _cli("init")
    _cli("site", "add", "RSTR", "--name", "Restore Test Hospital", "--ae-title", "RSTR_PACS",
         "--split", "training")
    _cli("user", "add", "manager", "--role", "data-manager", "--password-stdin", stdin=PASSWORD + "\n")
    sheet = tmp_path / "positive.xlsx"
    sheet.write_bytes(sheet_of("positive", [{"age": 61, "sex": 1}], [person]))
    _cli("clinical", "import", "--site", "RSTR", "--kind", "positive", str(sheet))
    _write_study(tmp_path / "images" / "bad", person, BAD)
    _write_study(tmp_path / "images" / "good", person, GOOD)
    _cli("images", "import", "--site", "RSTR", str(tmp_path / "images"))
    _cli("warehouse", "catalogue")
    original = str(synthetic_instance(person, modality="DX", study=BAD, instance=1,
                                      patient_id=person.nhs_number).StudyInstanceUID)
    return person, original


def _remove(original: str) -> None:
    _cli("study", "remove", original, "--reason", "Name burned in (report 4)", "--user",
         "manager", "--password-stdin", "--yes", stdin=PASSWORD + "\n")


def _images_of(db, study_uid: str) -> int:
    return _query(db, "SELECT count(*) FROM warehouse_imagerecord WHERE study_uid = ?", study_uid)[0][0]


def test_restoring_the_databases_keeps_the_study_removed(nccid_home, tmp_path):
    person, original = _installation(tmp_path)
    db, warehouse = nccid_home / "nccid.sqlite3", nccid_home / "warehouse"
    _back_up(nccid_home, tmp_path / "backup")
    _remove(original)
    [(study_uid,)] = _query(db, "SELECT study_uid FROM withdrawal_studywithdrawal")
    assert (warehouse / "withdrawn" / "studies" / f"{study_uid}.json").is_file()
    assert original not in (warehouse / "withdrawn" / "studies" / f"{study_uid}.json").read_text()
    _restore(nccid_home, tmp_path / "backup")
    assert _query(db, "SELECT count(*) FROM withdrawal_studywithdrawal") == [(0,)]  # forgotten
    assert _images_of(db, study_uid) == 3  # its rows are back; its objects are not

    # verify says so first, and asks for no repair that would have the study sent again
    verified = _cli("warehouse", "verify", "--all", check=False)
    assert verified.returncode == 1
    assert (f"the database lacks 1 study removal(s) the warehouse records ({study_uid})"
            in verified.stdout), verified.stdout
    assert "Run 'nccid init' to re-apply them" in verified.stdout
    assert "missing" not in verified.stdout.replace("0 missing", "")
    assert "the catalogue lists" not in verified.stdout  # the study's rows are not counted
    # and a data manager forgetting what is missing forgets nothing of the study
    forgot = _cli("warehouse", "verify", "--all", "--forget-missing", "--user", "manager",
                  "--password-stdin", stdin=PASSWORD + "\n", check=False)
    assert "forgot" not in forgot.stdout and _images_of(db, study_uid) == 3

    # intake refuses the study (new instances of it) although the restored list lacks it
    _write_study(tmp_path / "later", person, BAD, instances=(4, 5))
    _cli("images", "import", "--site", "RSTR", str(tmp_path / "later"), check=False)
    assert _query(db, "SELECT rejected, problem FROM imaging_studyreceipt WHERE study_uid = ?",
                  study_uid) == [(2, STUDY_REFUSAL)]
    assert _images_of(db, study_uid) == 3 and not find_leaks([warehouse / "training"], [study_uid])

    # init re-applies the removal: the rows the backup brought back go, audited
    init = _cli("init")
    assert f"re-applied {study_uid}" in init.stdout, init.stdout
    assert _query(db, "SELECT requested_by, completed_at IS NOT NULL FROM "
                      "withdrawal_studywithdrawal") == [("system", 1)]
    assert _images_of(db, study_uid) == 0
    assert _query(db, "SELECT problem FROM imaging_studyreceipt WHERE study_uid = ?",
                  study_uid) == [(STUDY_REMOVED,)]
    assert _query(db, "SELECT count(*) FROM accounts_auditevent WHERE action = "
                      "'study.remove.reapplied'") == [(1,)]
    assert _query(db, "SELECT count(*) FROM warehouse_imagerecord") == [(3,)]  # the good study
    assert not find_leaks([warehouse / "catalogue", warehouse / "training"], [study_uid])
    assert _cli("warehouse", "verify", "--all").returncode == 0


def test_a_catalogue_refresh_reapplies_it_too(nccid_home, tmp_path):
    """The cron job's refresh, run before anyone reads verify: the sweep re-applies it."""
    _person, original = _installation(tmp_path)
    db, warehouse = nccid_home / "nccid.sqlite3", nccid_home / "warehouse"
    _back_up(nccid_home, tmp_path / "backup")
    _remove(original)
    [(study_uid,)] = _query(db, "SELECT study_uid FROM withdrawal_studywithdrawal")
    _restore(nccid_home, tmp_path / "backup")

    _cli("warehouse", "catalogue")
    assert _query(db, "SELECT requested_by FROM withdrawal_studywithdrawal") == [("system",)]
    assert _images_of(db, study_uid) == 0
    assert not find_leaks([warehouse / "catalogue", warehouse / "training"], [study_uid])


def test_init_marks_a_removal_made_before_markers_existed(nccid_home, tmp_path):
    """An upgrade: a release without markers removed the study (no marker is left); verify
    names it, init writes its marker, and a backup restored after that cannot undo it."""
    _person, original = _installation(tmp_path)
    db, warehouse = nccid_home / "nccid.sqlite3", nccid_home / "warehouse"
    _back_up(nccid_home, tmp_path / "backup")
    _remove(original)
    [(study_uid,)] = _query(db, "SELECT study_uid FROM withdrawal_studywithdrawal")
    marker = warehouse / "withdrawn" / "studies" / f"{study_uid}.json"
    marker.unlink()  # as the older release left it

    verified = _cli("warehouse", "verify", "--all", check=False)
    assert verified.returncode == 1
    assert (f"1 study removal(s) have no marker in the warehouse ({study_uid}): run 'nccid "
            "init' to write them") in verified.stdout, verified.stdout
    init = _cli("init")
    assert "Marked 1 study removal(s) in the warehouse" in init.stdout
    assert marker.is_file()
    assert _cli("warehouse", "verify", "--all").returncode == 0

    _restore(nccid_home, tmp_path / "backup")
    _cli("init")
    assert _images_of(db, study_uid) == 0
