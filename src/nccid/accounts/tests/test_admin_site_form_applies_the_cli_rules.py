"""A site added or changed in the admin site obeys the rules ``nccid site add`` applies: before,
the admin's form took a lowercase code and an AE title with a backslash (DICOM's value
separator: no association could ever carry it, so the site's PACS would be refused)."""

from __future__ import annotations

import json

import pytest

from nccid.accounts.models import AuditEvent, Site

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def add_form(**fields) -> dict:
    form = {"code": "RNEW", "name": "Royal New Infirmary", "ae_title": "RNEW_PACS",
            "split_rule": "split", "declared_units": json.dumps({}), "date_format": "DMY",
            "_save": "Save"}
    form.update(fields)
    return form


@pytest.fixture
def manager_client(client, make_user):
    client.force_login(make_user("data-manager"))
    return client


@pytest.mark.parametrize("field, value, said", [
    ("ae_title", "RNEW\\PACS", "no backslash"),
    ("ae_title", "RNEW_PACS\u00e9", "1-16 printable characters"),
    ("code", "r new", "capital letters"),
    ("date_format", "YMD", "Select a valid choice"),
])
def test_an_admin_site_form_refuses_what_the_cli_refuses(manager_client, field, value, said):
    page = manager_client.post("/admin/accounts/site/add/", add_form(**{field: value}))
    assert page.status_code == 200, "the form was accepted"
    assert said in page.content.decode()
    assert not Site.objects.filter(name="Royal New Infirmary").exists()
    assert not AuditEvent.objects.filter(action="site.add").exists()


def test_an_admin_site_form_stores_what_the_cli_would(manager_client):
    saved = manager_client.post("/admin/accounts/site/add/",
                                add_form(code=" rnew ", ae_title="  RNEW_PACS "))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    site = Site.objects.get(name="Royal New Infirmary")
    assert (site.code, site.ae_title) == ("RNEW", "RNEW_PACS")


def test_an_empty_ae_title_in_the_admin_is_none(manager_client):
    manager_client.post("/admin/accounts/site/add/", add_form(ae_title=""))
    assert Site.objects.get(code="RNEW").ae_title is None
