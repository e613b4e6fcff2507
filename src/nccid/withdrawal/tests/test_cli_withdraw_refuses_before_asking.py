"""``nccid patient withdraw`` refuses, before showing what is held or asking to confirm, a
reason it would not keep, and a pseudonym nothing in the database names (a typing error,
most likely) unless ``--force``; ``nccid patient reinstate`` refuses an interrupted
withdrawal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nccid.withdrawal import services
from nccid.withdrawal.models import Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PASSWORD = "Correct-Horse-Battery-9\n"
UNKNOWN = "NCCID-AAAAAAAAAAAAAAAA"


def _run(*args: str, stdin: str = PASSWORD):
    from nccid.cli.main import typer_app

    result = CliRunner().invoke(typer_app, list(args), input=stdin)
    return result.exit_code, result.output + str(result.exception or "")


def test_a_bad_reason_is_refused_before_the_holdings_are_shown(patients, manager):
    gone, _kept = patients
    for reason, message in ((" ", "a reason is required"),
                            (f"pt {gone.person.nhs_number}", "must not contain an NHS/CHI number")):
        # no --yes: it would ask, and the answer on standard input would be "no"
        code, output = _run("patient", "withdraw", gone.pseudonym, "--reason", reason,
                            "--user", manager.username, "--password-stdin", stdin=PASSWORD + "n\n")
        assert code == 1 and message in output
        assert "Held of" not in output and "Withdraw " not in output
        assert gone.person.nhs_number not in output
    assert not Withdrawal.objects.exists()


def test_a_pseudonym_nothing_names_is_refused_unless_forced(patients, manager):
    user = ("--user", manager.username, "--password-stdin")
    code, output = _run("patient", "withdraw", UNKNOWN, "--reason", "Objected", *user, "--yes")
    assert (code == 1 and "nothing in the database or the warehouse names this patient" in output
            and "--force" in output)
    assert not Withdrawal.objects.exists()

    code, output = _run("patient", "withdraw", UNKNOWN, "--reason", "Objected", *user, "--yes", "--force")
    assert code == 0, output
    assert Withdrawal.objects.get().pseudonym == UNKNOWN
    # once listed, it is named: withdrawing again needs no --force
    code, output = _run("patient", "withdraw", UNKNOWN, "--reason", "Objected", *user, "--yes")
    assert code == 0, output


def test_reinstating_an_interrupted_withdrawal_is_refused(patients, manager, monkeypatch):
    gone, _kept = patients

    def clinical_fails(pseudonym, removed):
        raise OSError("disk gone")

    monkeypatch.setattr(services, "_purge_clinical", clinical_fails)
    with pytest.raises(OSError):
        services.withdraw(manager, gone.pseudonym, "Consent withdrawn")
    monkeypatch.undo()
    code, output = _run("patient", "reinstate", gone.pseudonym, "--reason", "in error",
                        "--user", manager.username, "--password-stdin")
    assert code == 1 and "complete the withdrawal first" in output
    assert Withdrawal.objects.filter(pseudonym=gone.pseudonym).exists()


@pytest.mark.parametrize("spacing", [".", "/", "  ", " - "])
def test_a_reason_holding_a_number_however_punctuated_is_refused(patients, spacing):
    gone, _kept = patients
    digits = gone.person.nhs_number
    typed = spacing.join((digits[:3], digits[3:6], digits[6:]))
    with pytest.raises(services.WithdrawalError, match="must not contain an NHS/CHI number"):
        services.check_reason(f"patient {typed} objected")
