"""Patients reinstated before reinstated withdrawals were kept (0004) left no row, so the
researchers' feed never listed them, though researchers' copies may hold what was withdrawn.
The audit log holds each withdrawal and reinstatement (pseudonym, time, who, the counts
removed): the rows are rebuilt from it. The set comes from the set kept at the withdrawal
(``warehouse.KeptSet``), else the patient's current set; a patient with neither is rebuilt
without one and, as the feed lists by set, stays unlisted (docs/withdrawal.md)."""

from django.db import migrations

WITHDRAWN = ("patient.withdraw.start", "patient.withdraw", "patient.withdraw.again.start",
             "patient.withdraw.again")
COMPLETED = ("patient.withdraw", "patient.withdraw.again")  # their detail: the counts removed
REINSTATED = "patient.reinstate"


def rebuild(apps, schema_editor):
    AuditEvent = apps.get_model("accounts", "AuditEvent")
    events = (AuditEvent.objects.filter(action__in=(*WITHDRAWN, REINSTATED))
              .exclude(pseudonym="").order_by("pseudonym", "at", "id"))
    withdrawn_at, counts, current = None, {}, None
    for event in events.iterator(chunk_size=2000):
        if event.pseudonym != current:
            withdrawn_at, counts, current = None, {}, event.pseudonym
        if event.action in WITHDRAWN:
            withdrawn_at = withdrawn_at or event.at
            if event.action in COMPLETED:
                for name, value in (event.detail or {}).items():
                    if isinstance(value, int):
                        counts[name] = counts.get(name, 0) + value
        elif withdrawn_at is not None:  # a reinstatement of a withdrawal the log shows
            _keep(apps, event, withdrawn_at, counts)
            withdrawn_at, counts = None, {}


def _keep(apps, event, withdrawn_at, counts) -> None:
    """A row for this reinstatement, unless one was made when it happened (0004 and later)."""
    Reinstated = apps.get_model("withdrawal", "ReinstatedWithdrawal")
    pseudonym = event.pseudonym
    if Reinstated.objects.filter(pseudonym=pseudonym,
                                 reinstated_at__range=(withdrawn_at, event.at)).exists():
        return
    removed = {**counts, "set_name": _set_of(apps, pseudonym)}
    Reinstated.objects.create(pseudonym=pseudonym, requested_at=withdrawn_at,
                              reinstated_at=event.at, reinstated_by=event.username,
                              removed=removed)


def _set_of(apps, pseudonym):
    for model in ("KeptSet", "PatientSet"):
        found = (apps.get_model("warehouse", model).objects.filter(pseudonym=pseudonym)
                 .values_list("set_name", flat=True).first())
        if found:
            return found
    return None


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_token_prefix'),
        ('warehouse', '0002_kept_set'),
        ('withdrawal', '0004_reinstated_withdrawal'),
    ]

    operations = [
        migrations.RunPython(rebuild, migrations.RunPython.noop),
    ]
