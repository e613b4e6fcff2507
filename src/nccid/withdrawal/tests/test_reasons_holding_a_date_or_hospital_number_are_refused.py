"""Withdrawing, reinstating and removing a study refuse a reason that seems to hold a date
(a birth date, say) or a hospital number, before anything is removed or listed, with an
error that never repeats it; nothing of the reason reaches the audit log."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.models import StudyWithdrawal, Withdrawal
from nccid.withdrawal.services import WithdrawalError, reinstate, remove_study, withdraw

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _bad_reasons(person) -> list[tuple[str, str]]:
    """(reason, what in it must never be stored or said)."""
    return [(f"objected by phone, DOB {person.birth_date:%d/%m/%Y}", f"{person.birth_date:%d/%m/%Y}"),
            (f"objected, hosp no {person.hospital_number}", person.hospital_number)]


def _refused(act, *args, secret: str) -> None:
    with pytest.raises(WithdrawalError, match="must not contain") as refused:
        act(*args)
    assert secret not in str(refused.value)


def test_a_withdrawal_with_such_a_reason_removes_nothing(patients, manager):
    gone, _kept = patients
    for reason, secret in _bad_reasons(gone.person):
        _refused(withdraw, manager, gone.pseudonym, reason, secret=secret)
    assert not Withdrawal.objects.exists()
    assert ImageRecord.objects.filter(pseudonym=gone.pseudonym).count() == 3
    assert not AuditEvent.objects.filter(action__startswith="patient.withdraw").exists()


def test_a_reinstatement_with_such_a_reason_leaves_the_patient_withdrawn(patients, manager):
    gone, _kept = patients
    withdraw(manager, gone.pseudonym, "Objected (ref 12)")
    for reason, secret in _bad_reasons(gone.person):
        _refused(reinstate, manager, gone.pseudonym, reason, secret=secret)
    assert Withdrawal.objects.filter(pseudonym=gone.pseudonym).exists()
    assert not AuditEvent.objects.filter(action="patient.reinstate").exists()


def test_a_study_removal_with_such_a_reason_removes_nothing(patients, manager):
    patient, _kept = patients
    study_uid = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid
    for reason, secret in _bad_reasons(patient.person):
        _refused(remove_study, manager, study_uid, reason, secret=secret)
    assert not StudyWithdrawal.objects.exists()
    assert ImageRecord.objects.filter(study_uid=study_uid).count() == 3
    assert not AuditEvent.objects.filter(action__startswith="study.remove").exists()
