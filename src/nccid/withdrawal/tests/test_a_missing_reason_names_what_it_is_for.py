"""A request sent without a reason is refused naming what the reason is kept with: the
removal of a study is no withdrawal, and a reinstatement's reason goes to the audit log."""

from __future__ import annotations

import pytest

from nccid.withdrawal.services import WithdrawalError, reinstate, remove_study, withdraw

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

PSEUDONYM = "NCCID-AAAAAAAAAAAAAAAA"


@pytest.mark.parametrize(("request_without_reason", "message"), [
    (lambda user: remove_study(user, "2.25.1234", "  "),
     "a reason is required (it is kept with the removal of the study)"),
    (lambda user: withdraw(user, PSEUDONYM, ""),
     "a reason is required (it is kept with the withdrawal)"),
    (lambda user: reinstate(user, PSEUDONYM, ""),
     "a reason is required (it is kept in the audit log)"),
], ids=["remove a study", "withdraw", "reinstate"])
def test_the_error_names_the_request(manager, request_without_reason, message):
    with pytest.raises(WithdrawalError) as refused:
        request_without_reason(manager)
    assert str(refused.value) == message
