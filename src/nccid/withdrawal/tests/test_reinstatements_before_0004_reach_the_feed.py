"""A patient withdrawn and reinstated by a release before reinstated withdrawals were kept left
no row: migration 0005 rebuilds it from the audit log, so the researchers' feed lists them
(their copies may hold what was withdrawn). Reinstatements that made their row are left alone."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from nccid.accounts.models import AuditEvent
from nccid.warehouse.models import KeptSet
from nccid.withdrawal.models import ReinstatedWithdrawal
from nccid.withdrawal.services import reinstate, withdraw, withdrawn_for

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
migration = importlib.import_module("nccid.withdrawal.migrations.0005_rebuild_reinstated_withdrawals")
OLD = "NCCID-AAAAAAAAAAAAAAAA"
NEW = "NCCID-BBBBBBBBBBBBBBBB"


def _logged(action: str, pseudonym: str, at, **detail) -> None:
    """An audit event as the older release wrote it (``at`` is set on creation: moved after)."""
    event = AuditEvent.objects.create(username="data.manager", action=action,
                                      pseudonym=pseudonym, detail=detail)
    AuditEvent.objects.filter(pk=event.pk).update(at=at)


def test_a_reinstatement_of_the_older_release_is_listed_once(make_user, manager):
    withdrawn_at = timezone.now() - timedelta(days=30)
    KeptSet.objects.create(pseudonym=OLD, set_name="training", kept_at=withdrawn_at)
    _logged("patient.withdraw", OLD, withdrawn_at, images=2, receipts=1)
    _logged("patient.reinstate", OLD, withdrawn_at + timedelta(days=2))
    KeptSet.objects.create(pseudonym=NEW, set_name="training", kept_at=withdrawn_at)
    withdraw(manager, NEW, "Objected to the study", refresh=False)  # this release: a row
    reinstate(manager, NEW, "Consent given again")
    researcher = make_user("researcher")
    assert [p["pseudonym"] for p in withdrawn_for(researcher)["patients"]] == [NEW]

    migration.rebuild(apps, None)
    migration.rebuild(apps, None)  # run again (a failed migrate retried): nothing doubles

    listed = {p["pseudonym"]: p for p in withdrawn_for(researcher)["patients"]}
    assert sorted(listed) == [OLD, NEW]
    assert listed[OLD]["withdrawn_at"] == withdrawn_at.isoformat()
    assert listed[OLD]["reinstated_at"] == (withdrawn_at + timedelta(days=2)).isoformat()
    assert ReinstatedWithdrawal.objects.filter(pseudonym=NEW).count() == 1
    old = ReinstatedWithdrawal.objects.get(pseudonym=OLD)
    assert old.removed == {"images": 2, "receipts": 1, "set_name": "training"}
    assert old.reinstated_by == "data.manager"


def test_a_patient_withdrawn_again_after_a_reinstatement_gets_one_row_per_reinstatement(manager):
    first = timezone.now() - timedelta(days=60)
    KeptSet.objects.create(pseudonym=OLD, set_name="validation", kept_at=first)
    for days in (0, 10):
        _logged("patient.withdraw", OLD, first + timedelta(days=days), images=1)
        _logged("patient.reinstate", OLD, first + timedelta(days=days + 1))
    _logged("patient.reinstate", OLD, first + timedelta(days=20))  # of no logged withdrawal
    migration.rebuild(apps, None)
    rows = ReinstatedWithdrawal.objects.filter(pseudonym=OLD).order_by("requested_at")
    assert [r.requested_at for r in rows] == [first, first + timedelta(days=10)]
