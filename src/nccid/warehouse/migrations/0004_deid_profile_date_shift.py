from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('warehouse', '0003_deid_profile_record'),
    ]

    operations = [
        migrations.AddField(
            model_name='deidprofilerecord',
            name='date_shift',
            field=models.CharField(blank=True, default='', max_length=16),
        ),
    ]
