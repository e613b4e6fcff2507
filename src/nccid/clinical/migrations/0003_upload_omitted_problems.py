"""``Upload.omitted_problems``: the problems of a sheet beyond those kept in ``errors``, counted
by column and severity (a sheet wrong in every cell made millions). Earlier uploads kept every
problem: none is omitted."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("clinical", "0002_clinicalrecord_json_owed"),
    ]

    operations = [
        migrations.AddField(
            model_name="upload",
            name="omitted_problems",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
