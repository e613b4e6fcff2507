"""Records whose warehouse JSON is owed (``ClinicalRecord.json_owed``). Records stored before
this migration count as written: what an older release failed to write is found by
``nccid warehouse verify`` and written by ``nccid warehouse sync-clinical``, as before."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("clinical", "0001_initial"),
    ]

    operations = [
        migrations.AddField(  # existing rows: written
            model_name="clinicalrecord",
            name="json_owed",
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(  # new rows, also those of the plain INSERTs of an import: owed
            model_name="clinicalrecord",
            name="json_owed",
            field=models.BooleanField(db_default=True),
        ),
        migrations.AddIndex(
            model_name="clinicalrecord",
            index=models.Index(condition=models.Q(("json_owed", True)), fields=["id"],
                               name="clinical_json_owed"),
        ),
    ]
