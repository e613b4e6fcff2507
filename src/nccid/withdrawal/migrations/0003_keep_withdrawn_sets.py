"""Patients withdrawn before sets were kept: their set, recorded on the withdrawal entry, goes
to ``warehouse.KeptSet`` so a reinstatement cannot move them to the other set."""

from django.db import migrations

SETS = ("training", "validation")


def keep_sets(apps, schema_editor):
    Withdrawal = apps.get_model("withdrawal", "Withdrawal")
    KeptSet = apps.get_model("warehouse", "KeptSet")
    rows = [KeptSet(pseudonym=entry.pseudonym, set_name=entry.removed["set_name"],
                    kept_at=entry.requested_at)
            for entry in Withdrawal.objects.all()
            if isinstance(entry.removed, dict) and entry.removed.get("set_name") in SETS]
    KeptSet.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ('warehouse', '0002_kept_set'),
        ('withdrawal', '0002_study_withdrawal'),
    ]

    operations = [
        migrations.RunPython(keep_sets, migrations.RunPython.noop),
    ]
