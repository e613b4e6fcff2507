"""A command for data managers only, run by another account, says what only data managers may
do: the vault's commands "use the vault", the others their own action (a researcher running
``warehouse verify --forget-missing`` was told "only data managers may use the vault"). The
``.denied`` audit event records the same cause."""

from __future__ import annotations

import pytest
from conftest import TEST_PASSWORD

from nccid.accounts.models import AuditEvent
from nccid.cli.tests.clirun import run_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

PSEUDONYM = "NCCID-0000000000000000"  # refused before it is looked at
COMMANDS = [
    (("vault", "reveal", PSEUDONYM, "--reason", "x"), "vault.reveal", "use the vault"),
    (("vault", "audit"), "audit.view", "use the vault"),
    (("vault", "rekey"), "vault.rekey", "use the vault"),
    (("warehouse", "verify", "--forget-missing"), "warehouse.forget_missing",
     "forget missing images"),
    (("patient", "show", PSEUDONYM), "patient.show", "look a patient up"),
    (("patient", "withdraw", PSEUDONYM, "--reason", "x"), "patient.withdraw",
     "withdraw a patient"),
    (("patient", "withdrawn"), "patient.withdrawn", "list withdrawn patients"),
    (("patient", "reinstate", PSEUDONYM, "--reason", "x"), "patient.reinstate",
     "reinstate a patient"),
    (("study", "remove", "1.2.826.0.1.3680043.10.999", "--reason", "x"), "study.remove",
     "remove a study"),
]


@pytest.mark.parametrize(("args", "action", "doing"), COMMANDS, ids=[c[1] for c in COMMANDS])
def test_a_researcher_is_told_what_only_data_managers_may_do(make_user, monkeypatch, args,
                                                             action, doing):
    researcher = make_user("researcher")
    result = run_cli(monkeypatch, *args, "--user", researcher.username, "--password-stdin",
                     stdin=TEST_PASSWORD + "\n")
    assert result.code == 1, result.out + result.err
    assert f"only data managers may {doing}" in result.err_text
    [event] = AuditEvent.objects.filter(action=f"{action}.denied")
    assert event.detail["cause"] == f"only data managers may {doing}"


@pytest.mark.parametrize("typed", ["9990001006", "HOSPZQX991"])
def test_a_name_no_account_has_is_not_recorded(monkeypatch, typed):
    # Someone may type an NHS or hospital number where the account goes; /audit/ shows it.
    result = run_cli(monkeypatch, "patient", "show", PSEUDONYM, "--user", typed, "--password-stdin",
                     stdin=TEST_PASSWORD + "\n")
    assert result.code == 1 and "unknown user or wrong password" in result.err_text
    [event] = AuditEvent.objects.filter(action="patient.show.denied")
    assert event.username.startswith("(unknown user) (cli:") and typed not in str(event.detail)


def test_an_accounts_wrong_password_is_recorded_under_its_name(make_user, monkeypatch):
    manager = make_user("data-manager")
    run_cli(monkeypatch, "vault", "audit", "--user", manager.username, "--password-stdin",
            stdin="wrong-password\n")
    [event] = AuditEvent.objects.filter(action="audit.view.denied")
    assert event.username.startswith(f"{manager.username} (cli:")
