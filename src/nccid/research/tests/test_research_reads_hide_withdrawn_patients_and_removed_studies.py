"""A withdrawal (or a study removal) whose catalogue refresh fails leaves the previous
catalogue version published. Research reads must not show the patient or the study even
then: cohorts, exports and the views every research reader opens hide whatever is on the
withdrawal lists, complete or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from nccid.research.cohort import CohortFilter, select_cohort
from nccid.research.export import export_cohort
from nccid.research.source import default_source
from nccid.warehouse.catalogue import refresh_catalogue
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.withdrawal import services
from nccid.withdrawal.models import StudyWithdrawal, Withdrawal
from nccid.withdrawal.tests.conftest import manager, patients  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def catalogued(patients, monkeypatch):  # noqa: F811
    """Both patients in the training set and the catalogue; later refreshes fail."""
    for patient in patients:
        PatientSet.objects.filter(pseudonym=patient.pseudonym).update(set_name="training")
        ImageRecord.objects.filter(pseudonym=patient.pseudonym).update(set_name="training")
    refresh_catalogue()

    def refresh_fails():
        raise OSError("No space left on device")

    monkeypatch.setattr(services, "_refresh_catalogue_twice", refresh_fails)
    return patients


def _files_naming(folder: Path, text: str) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_cohorts_and_exports_leave_out_a_patient_whose_withdrawal_was_interrupted(
        catalogued, manager, make_user, tmp_path):  # noqa: F811
    gone, kept = catalogued
    with pytest.raises(OSError):
        services.withdraw(manager, gone.pseudonym, "Consent withdrawn")
    assert Withdrawal.objects.get().completed_at is None
    researcher = make_user("researcher")

    cohort = select_cohort(researcher, CohortFilter())
    assert set(cohort.clinical()["pseudonym"]) == {kept.pseudonym}
    assert set(cohort.patients()["pseudonym"]) == {kept.pseudonym}
    assert cohort.counts().as_dict()["patients"] == 1
    export_cohort(researcher, CohortFilter(), tmp_path / "out", "parquet")
    assert _files_naming(tmp_path / "out", gone.pseudonym) == []
    assert _files_naming(tmp_path / "out", kept.pseudonym)


def test_every_catalogue_view_research_opens_hides_a_removed_study(catalogued, manager):  # noqa: F811
    gone, kept = catalogued
    study_uid = ImageRecord.objects.filter(pseudonym=kept.pseudonym).values_list("study_uid", flat=True)[0]
    with pytest.raises(OSError):
        services.remove_study(manager, study_uid, "An identifier burned into the image")
    assert StudyWithdrawal.objects.get().completed_at is None
    con = default_source().connect()
    try:
        for view in ("images", "studies"):
            found = con.execute(f"SELECT count(*) FROM {view} WHERE study_uid = ?", [study_uid]).fetchone()
            assert found == (0,), view
        assert con.execute("SELECT count(*) FROM images").fetchone() == (3,)  # the other patient's
    finally:
        con.close()
