"""Reinstated withdrawals are kept, for the researchers' feed of what left their sets."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('withdrawal', '0003_keep_withdrawn_sets'),
    ]

    operations = [
        migrations.CreateModel(
            name='ReinstatedWithdrawal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('pseudonym', models.CharField(db_index=True, max_length=32)),
                ('requested_at', models.DateTimeField()),
                ('reinstated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('reinstated_by', models.CharField(max_length=150)),
                ('removed', models.JSONField(blank=True, default=dict)),
            ],
            options={
                'ordering': ['-requested_at', '-id'],
            },
        ),
    ]
