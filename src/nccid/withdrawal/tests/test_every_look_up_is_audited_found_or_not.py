"""Every look-up of a patient or a study is audited, found or not. Before, a number nothing
named was refused before the look-up (unaudited) in words naming the pseudonym worked out
from it: a way to turn NHS numbers into pseudonyms unrecorded. A study found by the UID a site
sent showed its stored UID and its patient's pseudonym unrecorded too; its event names the
stored (keyed) UID, never the one typed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nccid.accounts.models import AuditEvent
from nccid.synthetic.dicom import synthetic_instance
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.models import StudyWithdrawal, Withdrawal
from nccid.withdrawal.services import WithdrawalError, look_up, look_up_study

from .conftest import PEOPLE

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PASSWORD = "Correct-Horse-Battery-9\n"
NOT_SENT = PEOPLE[5]  # a valid number no row or object names


def _run(*args: str, stdin: str = PASSWORD):
    from nccid.cli.main import typer_app

    result = CliRunner().invoke(typer_app, list(args), input=stdin)
    return result.exit_code, result.output + str(result.exception or "")


def look_ups(action: str = "patient.look-up") -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_number_nothing_names_is_audited_and_its_pseudonym_not_shown(patients, manager, keyring):
    pseudonym = keyring.pseudonym(NOT_SENT.nhs_number)
    with pytest.raises(WithdrawalError) as refused:
        look_up(manager, pseudonym)
    assert pseudonym not in str(refused.value)
    [event] = look_ups()
    assert (event.username, event.pseudonym, event.detail) == (
        manager.username, pseudonym, {"found": False})

    found = look_up(manager, patients[0].pseudonym)
    assert found.found and found.images == 3
    assert look_ups()[-1].detail == {"found": True}


@pytest.mark.parametrize("command", [("patient", "show"),
                                     ("patient", "withdraw", "--reason", "Objected")])
def test_the_command_line_audits_an_unknown_number_and_never_shows_its_pseudonym(
        patients, manager, keyring, command):
    code, output = _run(*command[:2], NOT_SENT.nhs_number, *command[2:],
                        "--user", manager.username, "--password-stdin")
    assert code == 1 and "nothing in the database or the warehouse names this patient" in output
    assert keyring.pseudonym(NOT_SENT.nhs_number) not in output
    assert NOT_SENT.nhs_number not in output
    [event] = look_ups()
    assert (event.pseudonym, event.detail) == (keyring.pseudonym(NOT_SENT.nhs_number), {"found": False})


def test_a_forced_withdrawal_of_a_patient_not_yet_sent_names_them_only_once_withdrawn(
        patients, manager, keyring):
    pseudonym = keyring.pseudonym(NOT_SENT.nhs_number)
    user = ("--user", manager.username, "--password-stdin")
    code, output = _run("patient", "withdraw", NOT_SENT.nhs_number, "--reason", "Objected",
                        *user, "--force", stdin=PASSWORD + "n\n")
    assert code == 1 and "nothing was changed" in output and pseudonym not in output
    assert "not yet sent" in output and not Withdrawal.objects.exists()

    code, output = _run("patient", "withdraw", NOT_SENT.nhs_number, "--reason", "Objected",
                        *user, "--force", stdin=PASSWORD + "y\n")
    assert code == 0 and f"Withdrew {pseudonym}" in output
    assert [e.detail for e in look_ups()] == [{"found": False}] * 2


def _original_uid(patient) -> str:
    return str(synthetic_instance(patient.person, modality="CT", study=1, instance=1,
                                  patient_id=patient.person.nhs_number).StudyInstanceUID)


def test_a_study_found_by_the_uid_a_site_sent_is_audited_by_its_stored_uid(patients, manager):
    patient = patients[0]
    original = _original_uid(patient)
    stored = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid

    held = look_up_study(manager, original)
    assert (held.study_uid, held.patients) == (stored, (patient.pseudonym,))
    [event] = look_ups("study.look-up")
    assert (event.username, event.pseudonym) == (manager.username, patient.pseudonym)
    assert event.detail == {"study_uid": stored, "found": True, "as_sent": True,
                            "patients": [patient.pseudonym]}
    assert original not in json.dumps(event.detail)

    look_up_study(manager, stored)
    assert look_ups("study.look-up")[-1].detail["as_sent"] is False
    with pytest.raises(WithdrawalError, match="no study"):
        look_up_study(manager, "1.2.826.0.1.3680043.9.7433.1.1")
    assert look_ups("study.look-up")[-1].detail == {"found": False}


def test_study_remove_answered_no_is_audited_by_the_stored_uid(patients, manager):
    patient = patients[0]
    original = _original_uid(patient)
    code, output = _run("study", "remove", original, "--reason", "Checking",
                        "--user", manager.username, "--password-stdin", stdin=PASSWORD + "n\n")
    assert code == 1 and "nothing was changed" in output and not StudyWithdrawal.objects.exists()
    [event] = look_ups("study.look-up")
    stored = ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid
    assert (event.pseudonym, event.detail["study_uid"]) == (patient.pseudonym, stored)
    assert original not in json.dumps(event.detail)
