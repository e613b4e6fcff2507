"""A site's declared units are checked when saved (``Site.clean``, so the admin site and any
form): before, the admin took any JSON. ``{"CRP": "mg/dL"}`` (a header, not a field name) was
stored and never read, so CRP 5 mg/dL was kept as 5 mg/L; ``{"d_dimer": "furlongs"}`` was
stored and then refused every upload of the site. A header is now stored as its field, a unit
in the template's spelling, and anything else is refused naming what is allowed."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from nccid.accounts.models import AuditEvent, Site
from nccid.clinical.schema import get_template
from nccid.clinical.validation import SiteRules, compile_column

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def site_form(site: Site, units) -> dict:
    return {"code": site.code, "name": site.name, "ae_title": site.ae_title or "",
            "split_rule": site.split_rule, "declared_units": json.dumps(units),
            "date_format": site.date_format, "_save": "Save"}


@pytest.fixture
def manager_client(client, make_user):
    client.force_login(make_user("data-manager"))
    return client


def test_a_header_is_stored_as_its_field_so_the_unit_is_applied(manager_client, site):
    saved = manager_client.post(f"/admin/accounts/site/{site.pk}/change/",
                                site_form(site, {"CRP": "mg/dl", "D-dimer": "ng/mL"}))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    site.refresh_from_db()
    assert site.declared_units == {"crp": "mg/dL", "d_dimer": "ng/mL"}
    crp = compile_column(get_template("positive").field("crp"),
                         SiteRules(code=site.code, declared_units=site.declared_units))
    assert crp("5") == (5.0, 50.0)  # as typed, and in mg/L: 5 mg/dL is 50 mg/L


@pytest.mark.parametrize("units, said", [
    ({"d_dimer": "furlongs"}, "d_dimer: &#x27;furlongs&#x27; is not a unit it takes: use one of "
                              "mg/L, ng/mL, µg/L"),
    ({"crp_level": "mg/L"}, "&#x27;crp_level&#x27; is not a field that takes a unit: the fields "
                            "that do are age, creatinine, crp, d_dimer"),
    ({"sex": "mg/L"}, "&#x27;sex&#x27; takes no unit"),
    ({"crp": "mg/L", "CRP": "mg/dL"}, "crp is declared twice, as mg/L and mg/dL"),
    (["crp", "mg/dL"], "Write an object of field names and units"),
])
def test_what_no_upload_could_use_is_refused_naming_what_is_allowed(manager_client, site,
                                                                     units, said):
    page = manager_client.post(f"/admin/accounts/site/{site.pk}/change/", site_form(site, units))
    assert page.status_code == 200, "the form was accepted"
    assert said in page.content.decode()
    site.refresh_from_db()
    assert site.declared_units == {}
    assert not AuditEvent.objects.filter(action="site.change").exists()


def test_the_admin_field_says_the_format_and_the_units(manager_client, site):
    page = manager_client.get(f"/admin/accounts/site/{site.pk}/change/").content.decode()
    assert "Units the site reports in, by field name" in page
    assert "d_dimer: mg/L, ng/mL, µg/L, ug/L, ug/mL, µg/mL" in page


def test_an_empty_box_declares_none(manager_client, site):
    site.declared_units = {"crp": "mg/dL"}
    site.save()
    form = site_form(site, {})
    form["declared_units"] = ""
    saved = manager_client.post(f"/admin/accounts/site/{site.pk}/change/", form)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    site.refresh_from_db()
    assert site.declared_units == {}


def test_the_model_refuses_it_outside_the_admin_too(site):
    site.declared_units = {"d_dimer": "furlongs"}
    with pytest.raises(ValidationError) as caught:
        site.full_clean()
    assert "d_dimer" in caught.value.message_dict["declared_units"][0]
