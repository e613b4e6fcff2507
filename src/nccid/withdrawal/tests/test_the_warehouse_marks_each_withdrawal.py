"""The warehouse keeps a marker of each withdrawal (``withdrawn/<pseudonym>.json``: the date
only, the pseudonym in its name), so a database restored from an older backup cannot forget
it: written by the withdrawal, removed by a reinstatement, written by ``nccid init`` for
withdrawals made before markers existed, and never read as research data."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.layout import withdrawal_marker_key
from nccid.warehouse.service import get_warehouse
from nccid.warehouse.upgrade import upgrade_warehouse
from nccid.withdrawal.markers import differences, marked, write_marker
from nccid.withdrawal.models import ReinstatedWithdrawal, Withdrawal
from nccid.withdrawal.services import reinstate, withdraw, withdrawn_among

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_a_withdrawal_writes_its_marker_and_a_reinstatement_removes_it(patients, manager):
    warehouse = get_warehouse()
    gone = patients[0].pseudonym
    withdraw(manager, gone, "objected by letter")
    entry = Withdrawal.objects.get(pseudonym=gone)

    body = json.loads(warehouse.read(withdrawal_marker_key(gone)))
    assert body == {"withdrawn_at": entry.requested_at.isoformat()}  # no reason, no account
    assert marked() == {gone} and not differences().any
    # the marker is neither research data nor catalogued
    refresh_catalogue()
    con = connect_catalogue()
    assert con.execute("SELECT count(*) FROM patients WHERE pseudonym = ?", [gone]).fetchone() == (0,)

    assert reinstate(manager, gone, "withdrawn in error")
    assert not warehouse.exists(withdrawal_marker_key(gone))
    assert not differences().any


def test_init_marks_the_withdrawals_of_an_older_release(local_warehouse):
    """Withdrawals made before the warehouse kept markers get one at the upgrade."""
    old = Withdrawal.objects.create(pseudonym="NCCID-AAAAAAAAAAAAAAAA", requested_by="dm",
                                    reason="objected", completed_at=timezone.now())
    assert differences().unmarked == [old.pseudonym]

    done = upgrade_warehouse()

    assert done.markers_written == 1 and done.withdrawals_reapplied == []
    assert marked() == {old.pseudonym}
    assert not differences().any
    assert upgrade_warehouse().markers_written == 0  # idempotent


def test_a_marker_the_database_lacks_refuses_the_patient_until_reapplied(patients):
    """A database older than the withdrawal: intake's check already refuses the patient."""
    gone = patients[0].pseudonym
    write_marker(gone, timezone.now())
    assert withdrawn_among([gone, patients[1].pseudonym]) == {gone}
    assert set(differences().unapplied) == {gone}

    done = upgrade_warehouse()

    assert done.withdrawals_reapplied == [gone]
    entry = Withdrawal.objects.get(pseudonym=gone)
    assert entry.requested_by == "system" and entry.completed_at is not None
    assert not differences().any


def test_a_marker_of_a_withdrawal_reinstated_since_is_stale(local_warehouse):
    """A warehouse restored from before a reinstatement brings its marker back: the database
    knows the withdrawal was taken back, so the marker goes and nobody is withdrawn again."""
    pseudonym = "NCCID-BBBBBBBBBBBBBBBB"
    withdrawn_at = timezone.now() - timedelta(days=3)
    ReinstatedWithdrawal.objects.create(pseudonym=pseudonym, requested_at=withdrawn_at,
                                        reinstated_by="dm")
    write_marker(pseudonym, withdrawn_at)
    assert differences().stale == [pseudonym]

    done = upgrade_warehouse()

    assert done.stale_markers_removed == [pseudonym] and done.withdrawals_reapplied == []
    assert not Withdrawal.objects.exists() and marked() == set()
