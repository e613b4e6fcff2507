"""``nccid patient withdraw`` stopped part-way by the warehouse (an object store that refuses
connections or stops answering) says, in one line on stderr, that the withdrawal was
interrupted, why, and that withdrawing again completes it, as docs/withdrawal.md and the
portal say; it said only the store's error, though the withdrawal is listed as interrupted
and intake already refuses the patient."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError

from nccid.cli.tests.clirun import run_cli
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.storage import StorageError, Warehouse
from nccid.withdrawal.models import Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PASSWORD = "Correct-Horse-Battery-9\n"

OUTAGES = {
    "refused": EndpointConnectionError(endpoint_url="http://127.0.0.1:9/nccid-warehouse"),
    "silent": StorageError("the warehouse's object store (storage_url) did not answer within "
                           "30 s (delete_objects)"),
}


@pytest.mark.parametrize("outage", sorted(OUTAGES))
def test_a_store_outage_mid_withdrawal_says_withdraw_again(patients, manager, monkeypatch, outage):
    gone, _kept = patients

    def store_fails(self, keys):
        raise OUTAGES[outage]

    withdraw = ("patient", "withdraw", gone.pseudonym, "--reason", "Consent withdrawn",
                "--user", manager.username, "--password-stdin", "--yes")
    with monkeypatch.context() as down:
        down.setattr(Warehouse, "delete_many", store_fails)
        stopped = run_cli(monkeypatch, *withdraw, stdin=PASSWORD)
    assert stopped.code == 1, stopped.out + stopped.err
    line = stopped.err_text
    assert line.count("error:") == 1 and "Traceback" not in stopped.err, stopped.err
    assert f"error: the withdrawal of {gone.pseudonym} was interrupted (" in line, line
    assert "storage_url" in line
    assert line.endswith("withdraw the patient again to complete it "
                         "(intake already refuses this patient)"), line
    assert Withdrawal.objects.get(pseudonym=gone.pseudonym).completed_at is None

    again = run_cli(monkeypatch, *withdraw, stdin=PASSWORD)
    assert again.code == 0, again.err
    assert Withdrawal.objects.get(pseudonym=gone.pseudonym).completed_at is not None
    assert not ImageRecord.objects.filter(pseudonym=gone.pseudonym).exists()


def test_an_outage_before_the_withdrawal_is_listed_says_only_the_outage(patients, manager,
                                                                        monkeypatch):
    """Nothing recorded (the database refused the withdrawal's row): no "interrupted"."""
    from django.db import OperationalError

    gone, _kept = patients

    def database_down(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1 refused")

    with monkeypatch.context() as down:
        down.setattr(Withdrawal.objects, "get_or_create", database_down)
        stopped = run_cli(monkeypatch, "patient", "withdraw", gone.pseudonym, "--reason",
                          "Consent withdrawn", "--user", manager.username, "--password-stdin",
                          "--yes", stdin=PASSWORD)
    assert stopped.code == 1
    assert "interrupted" not in stopped.err and "refused" in stopped.err_text
    assert not Withdrawal.objects.exists()
