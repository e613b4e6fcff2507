"""The commands that turn an identifier into a pseudonym (``patient show``/``withdraw``/
``reinstate``/``relink`` by NHS/CHI or hospital number, ``study remove`` by the UID a site
sent) or reveal a number refuse an administrator, as the portal does: an administrator may
query research data, so must not re-identify it too. The refusal is audited as
``<action>.denied``, names no pseudonym and shows none; a data manager's command still runs,
and the services refuse an administrator whatever calls them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nccid.accounts.models import ADMINS_MAY_NOT_REIDENTIFY, AuditEvent
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal import services
from nccid.withdrawal.models import StudyWithdrawal, Withdrawal
from nccid.withdrawal.relink import RelinkError, plan

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PASSWORD = "Correct-Horse-Battery-9\n"


def _run(*args: str):
    from nccid.cli.main import typer_app

    result = CliRunner().invoke(typer_app, list(args), input=PASSWORD)
    return result.exit_code, result.output + str(result.exception or "")


def _commands(patient, site, study_as_sent: str) -> list[tuple[tuple[str, ...], str]]:
    number = patient.person.nhs_number
    return [(("patient", "show", number), "patient.show"),
            (("patient", "withdraw", number, "--reason", "Objected", "--yes"), "patient.withdraw"),
            (("patient", "reinstate", number, "--reason", "Sent in error"), "patient.reinstate"),
            (("patient", "relink", "--site", site.code, "--hospital-number",
              patient.person.hospital_number, "--nhs-number", number, "--reason", "Typo",
              "--yes"), "patient.relink"),
            (("study", "remove", study_as_sent, "--reason", "Name in image", "--yes"),
             "study.remove"),
            (("vault", "reveal", patient.pseudonym, "--reason", "Site query"), "vault.reveal")]


def _study_as_sent(patient) -> str:
    from nccid.synthetic.dicom import synthetic_instance

    return str(synthetic_instance(patient.person, study=1, instance=1).StudyInstanceUID)


def test_an_administrator_is_refused_every_command_that_re_identifies(patients, site, make_user):
    admin = make_user("admin")
    patient = patients[0]
    for args, action in _commands(patient, site, _study_as_sent(patient)):
        code, output = _run(*args, "--user", admin.username, "--password-stdin")
        assert code == 1 and ADMINS_MAY_NOT_REIDENTIFY in " ".join(output.split()), args
        assert patient.pseudonym not in output and "Held of" not in output, args
        [event] = AuditEvent.objects.filter(action=f"{action}.denied")
        assert event.detail["cause"] == ADMINS_MAY_NOT_REIDENTIFY and event.pseudonym in ("", patient.pseudonym)
    assert not AuditEvent.objects.filter(action__in=("patient.look-up", "study.look-up")).exists()
    assert not Withdrawal.objects.exists() and not StudyWithdrawal.objects.exists()
    assert ImageRecord.objects.filter(pseudonym=patient.pseudonym).count() == 3
    code, _ = _run("patient", "withdrawn", "--user", admin.username, "--password-stdin")
    assert code == 0  # the list of withdrawn pseudonyms re-identifies no one: researchers get it


def test_a_data_manager_finds_the_patient_and_the_study(patients, site, manager):
    patient = patients[0]
    user = ("--user", manager.username, "--password-stdin")
    code, output = _run("patient", "show", patient.person.nhs_number, *user)
    assert code == 0 and patient.pseudonym in output
    code, output = _run("study", "remove", _study_as_sent(patient), "--reason", "Name in image",
                        "--yes", *user)
    assert code == 0 and "Removed study" in output


def test_the_services_refuse_an_administrator_whoever_calls_them(patients, site, make_user):
    admin, patient = make_user("admin"), patients[0]
    study = ImageRecord.objects.filter(pseudonym=patient.pseudonym).values_list("study_uid", flat=True)[0]
    for call in (lambda: services.look_up(admin, patient.pseudonym),
                 lambda: services.withdraw(admin, patient.pseudonym, "Objected"),
                 lambda: services.reinstate(admin, patient.pseudonym, "Sent in error"),
                 lambda: services.look_up_study(admin, study),
                 lambda: services.remove_study(admin, study, "Name in image")):
        with pytest.raises(services.WithdrawalError, match=ADMINS_MAY_NOT_REIDENTIFY):
            call()
    with pytest.raises(RelinkError, match=ADMINS_MAY_NOT_REIDENTIFY):
        plan(admin, site.code, patient.person.hospital_number, patient.person.nhs_number, "Typo")
    assert not AuditEvent.objects.filter(action__endswith=".denied").exclude(pseudonym="").exists()
    assert ImageRecord.objects.filter(study_uid=study).exists()
