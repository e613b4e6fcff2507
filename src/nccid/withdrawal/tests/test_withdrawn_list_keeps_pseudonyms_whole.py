"""``nccid patient withdrawn`` piped (80 columns, no terminal) prints every pseudonym whole, as
``reinstate`` needs it; ``--json`` gives one object a line for scripts."""

from __future__ import annotations

import json

import pytest

from nccid.cli.common import console
from nccid.cli.tests.clirun import run_cli
from nccid.withdrawal.models import Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PASSWORD = "Correct-Horse-Battery-9\n"
PSEUDONYMS = ["NCCID-ABCDEFGHIJKLMNOP", "NCCID-QRSTUVWXYZ234567"]
REASON = "Patient objected in writing to the trust's data protection officer (ticket 77)"


@pytest.fixture
def withdrawals(manager):
    made = [Withdrawal.objects.create(pseudonym=p, requested_by=manager.username, reason=REASON)
            for p in PSEUDONYMS]
    Withdrawal.objects.filter(pk=made[0].pk).update(completed_at=made[0].requested_at)
    return made


def _withdrawn(monkeypatch, manager, *options: str):
    monkeypatch.setattr(console, "_width", 80)  # a pipe: Rich's default width
    return run_cli(monkeypatch, "patient", "withdrawn", "--user", manager.username,
                   "--password-stdin", *options, stdin=PASSWORD)


def test_the_table_keeps_each_pseudonym_whole_on_80_columns(withdrawals, manager, monkeypatch):
    result = _withdrawn(monkeypatch, manager)
    assert result.code == 0, result.err
    assert all(p in result.out for p in PSEUDONYMS), result.out
    assert "…" not in result.out  # nothing cut: the account and reason wrap instead
    assert max(len(line) for line in result.out.splitlines()) <= 80


def test_json_is_one_object_a_withdrawal_newest_first(withdrawals, manager, monkeypatch):
    result = _withdrawn(monkeypatch, manager, "--json")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in result.out.splitlines()]
    assert [r["pseudonym"] for r in rows] == [w.pseudonym for w in Withdrawal.objects.all()]
    by_name = {r["pseudonym"]: r for r in rows}
    assert by_name[PSEUDONYMS[0]]["state"] == "complete" and by_name[PSEUDONYMS[1]]["state"] == "interrupted"
    assert by_name[PSEUDONYMS[1]]["reason"] == REASON
    assert by_name[PSEUDONYMS[1]]["requested_by"] == manager.username
    assert by_name[PSEUDONYMS[1]]["requested_at"].endswith("Z")
