"""An empty ``research_sets`` used to grant the training set; from this release it grants
none. Researchers and administrators whose list is empty kept their access through that
default, so they are granted training here: an upgrade changes no one's access. Accounts made
from now on start with none until a data manager grants a set."""

from django.db import migrations, models

import nccid.accounts.models

QUERYING_ROLES = ("researcher", "admin")


def grant_training_where_the_default_did(apps, schema_editor) -> None:
    User = apps.get_model("accounts", "User")
    for user in User.objects.filter(role__in=QUERYING_ROLES).only("pk", "research_sets"):
        if not user.research_sets:
            User.objects.filter(pk=user.pk).update(research_sets=["training"])


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_token_prefix'),
    ]

    operations = [
        migrations.AlterField(
            model_name='user',
            name='research_sets',
            field=models.JSONField(blank=True, default=list, help_text='Sets this account may query as a researcher: ["training"] grants the training set; [] grants none (access is revoked).', validators=[nccid.accounts.models.validate_research_sets]),
        ),
        # Not undone on a rollback: the older release reads ["training"] as it read [].
        migrations.RunPython(grant_training_where_the_default_did, migrations.RunPython.noop),
    ]
