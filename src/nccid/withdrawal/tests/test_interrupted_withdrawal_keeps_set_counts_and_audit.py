"""An interrupted withdrawal records the patient's set, its start and what it removed before
it stopped; withdrawing again adds to those counts, and researchers are told to delete the
patient from their copies. An interrupted withdrawal cannot be reinstated: what it had not
yet removed would go back to researchers."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent
from nccid.clinical.models import ClinicalRecord
from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.withdrawal import services
from nccid.withdrawal.models import Withdrawal
from nccid.withdrawal.services import WithdrawalError, reinstate, withdraw, withdrawn_for

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _refresh_fails():
    raise OSError("S3 unavailable while refreshing the catalogue")


def _clinical_fails(pseudonym, removed):
    raise OSError("disk gone")


def test_a_withdrawal_completed_by_a_second_run_keeps_the_set_for_researchers(
        patients, manager, make_user, monkeypatch):
    gone, _kept = patients
    PatientSet.objects.filter(pseudonym=gone.pseudonym).update(set_name="training")
    ImageRecord.objects.filter(pseudonym=gone.pseudonym).update(set_name="training")
    monkeypatch.setattr(services, "_refresh_catalogue_twice", _refresh_fails)
    with pytest.raises(OSError):
        withdraw(manager, gone.pseudonym, "Consent withdrawn")
    monkeypatch.undo()
    researcher = make_user("researcher")
    assert [r["pseudonym"] for r in withdrawn_for(researcher)["patients"]] == [gone.pseudonym]

    withdraw(manager, gone.pseudonym, "Consent withdrawn")

    entry = Withdrawal.objects.get()
    assert entry.completed_at is not None
    assert entry.removed["set_name"] == "training"
    assert (entry.removed["images"], entry.removed["clinical_records"]) == (3, 1)  # the first run's
    assert [r["pseudonym"] for r in withdrawn_for(researcher)["patients"]] == [gone.pseudonym]


def test_an_interrupted_run_records_its_start_and_what_it_removed(patients, manager, monkeypatch):
    gone, _kept = patients
    monkeypatch.setattr(services, "_purge_clinical", _clinical_fails)
    with pytest.raises(OSError):
        withdraw(manager, gone.pseudonym, "Consent withdrawn")
    monkeypatch.undo()
    start = AuditEvent.objects.get(action="patient.withdraw.start")
    assert (start.pseudonym, start.reason) == (gone.pseudonym, "Consent withdrawn")
    entry = Withdrawal.objects.get()
    assert entry.completed_at is None
    assert (entry.removed["images"], entry.removed["clinical_records"]) == (3, 0)
    assert entry.removed["set_name"] in ("training", "validation")

    again = withdraw(manager, gone.pseudonym, "Consent withdrawn")
    assert (again.images, again.clinical_records) == (0, 1)
    entry.refresh_from_db()
    assert (entry.removed["images"], entry.removed["clinical_records"]) == (3, 1)
    assert AuditEvent.objects.filter(action="patient.withdraw.again.start").exists()


def test_an_interrupted_withdrawal_cannot_be_reinstated(patients, manager, monkeypatch):
    gone, _kept = patients
    monkeypatch.setattr(services, "_purge_clinical", _clinical_fails)
    with pytest.raises(OSError):
        withdraw(manager, gone.pseudonym, "Consent withdrawn")
    monkeypatch.undo()
    assert ClinicalRecord.objects.filter(pseudonym=gone.pseudonym).exists()  # half withdrawn

    with pytest.raises(WithdrawalError, match="complete the withdrawal first"):
        reinstate(manager, gone.pseudonym, "withdrawn in error")
    assert Withdrawal.objects.filter(pseudonym=gone.pseudonym).exists()
    refresh_catalogue()
    con = connect_catalogue(read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM clinical WHERE pseudonym = ?",
                           [gone.pseudonym]).fetchone() == (0,)
    finally:
        con.close()

    withdraw(manager, gone.pseudonym, "Consent withdrawn")
    assert reinstate(manager, gone.pseudonym, "withdrawn in error")


def test_a_study_removal_completed_by_a_second_run_keeps_the_set_for_researchers(
        patients, manager, make_user, monkeypatch):
    gone, _kept = patients
    ImageRecord.objects.filter(pseudonym=gone.pseudonym).update(set_name="training")
    PatientSet.objects.filter(pseudonym=gone.pseudonym).update(set_name="training")
    study_uid = ImageRecord.objects.filter(pseudonym=gone.pseudonym).values_list("study_uid", flat=True)[0]
    monkeypatch.setattr(services, "_refresh_catalogue_twice", _refresh_fails)
    with pytest.raises(OSError):
        services.remove_study(manager, study_uid, "Name burned in")
    monkeypatch.undo()
    services.remove_study(manager, study_uid, "Name burned in")
    researcher = make_user("researcher")
    assert [s["study_uid"] for s in withdrawn_for(researcher)["studies"]] == [study_uid]
