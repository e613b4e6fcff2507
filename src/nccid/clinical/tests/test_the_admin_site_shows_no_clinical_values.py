"""No one may read the validation set's per-patient ground truth (docs/research.md): validation
reports give aggregate figures only. The admin site showed an administrator each clinical
record read-only, a validation-set patient's ``final_covid_status`` included, and listed each
record's kind (a negative sheet's record is a COVID-negative patient's). Clinical records are
not in the admin site at all; the research tools read the training set's."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from nccid.clinical.models import ClinicalRecord
from nccid.clinical.services import confirm_upload, preview_upload
from nccid.clinical.tests.helpers import PEOPLE, sheet_of

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def validation_record(site, keyring, make_user):
    site.split_rule = "validation"
    site.save()
    upload = preview_upload(site, "positive", "sheet.xlsx",
                            sheet_of("positive", [{"final_covid_status": "Negative"}], PEOPLE[:1]),
                            make_user("uploader", site))
    confirm_upload(upload, make_user("uploader", site))
    record = ClinicalRecord.objects.get(site=site)
    assert record.cleaned.get("final_covid_status")
    return record


def test_an_administrator_cannot_open_a_validation_patients_record(client, make_user,
                                                                   validation_record):
    client.force_login(make_user("admin"))
    change = f"/admin/clinical/clinicalrecord/{validation_record.pk}/change/"
    answer = client.get(change)
    assert answer.status_code != 200 and "final_covid_status" not in answer.content.decode()
    assert ClinicalRecord not in admin.site._registry


def test_no_admin_page_shows_a_clinical_value(client, make_user, validation_record):
    """Every list and every object's page the admin site has, as an administrator sees them."""
    client.force_login(make_user("admin"))
    shown = []
    for model in admin.site._registry:
        meta = model._meta
        shown.append(client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")))
        for pk in model._default_manager.values_list("pk", flat=True)[:50]:
            shown.append(client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change",
                                            args=[pk])))
    assert {answer.status_code for answer in shown} == {200}
    for answer in shown:
        body = answer.content.decode()
        assert "final_covid_status" not in body and "covid_status" not in body, answer.request
