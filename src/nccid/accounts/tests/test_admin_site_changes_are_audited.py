"""A site's AE title decides which PACS the DICOM node takes images from for it, and its split
rule which research set its patients go to: changing either in the admin site (or its name, or
adding or deleting a site) is audited as account changes are, naming the site's code and each
changed field as [old, new], and who did it. Before, only accounts were."""

from __future__ import annotations

import json

import pytest

from nccid.accounts.models import AuditEvent, Site, audit
from nccid.cli.tests.clirun import run_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def site_form(site: Site, **fields) -> dict:
    """What the admin's change page posts for ``site`` as it is, with ``fields`` changed."""
    form = {"code": site.code, "name": site.name, "ae_title": site.ae_title or "",
            "split_rule": site.split_rule, "declared_units": json.dumps(site.declared_units),
            "date_format": site.date_format, "_save": "Save"}
    form.update(fields)
    return form


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_data_manager_changing_a_sites_ae_title_and_split_is_audited(client, site, make_user):
    manager = make_user("data-manager")
    client.force_login(manager)
    saved = client.post(f"/admin/accounts/site/{site.pk}/change/",
                        site_form(site, ae_title="RTEST_NEWPACS", split_rule="validation"))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    [event] = events("site.change")
    assert event.username == manager.username
    assert event.detail == {"site": "RTEST", "changes": {
        "ae_title": ["RTEST_PACS", "RTEST_NEWPACS"], "split_rule": ["split", "validation"]}}

    # Saved again unchanged: nothing to audit.
    site.refresh_from_db()
    again = client.post(f"/admin/accounts/site/{site.pk}/change/", site_form(site))
    assert again.status_code == 302 and len(events("site.change")) == 1


def test_a_renamed_site_is_audited_under_its_new_code(client, site, make_user):
    client.force_login(make_user("data-manager"))
    client.post(f"/admin/accounts/site/{site.pk}/change/",
                site_form(site, code="RNEW", name="Royal New Infirmary"))
    [event] = events("site.change")
    assert event.detail == {"site": "RNEW", "changes": {
        "code": ["RTEST", "RNEW"], "name": ["Royal Test Infirmary", "Royal New Infirmary"]}}


def test_sites_added_and_deleted_in_the_admin_are_audited(client, make_user):
    manager = make_user("data-manager")
    client.force_login(manager)
    client.post("/admin/accounts/site/add/", site_form(
        Site(code="RADD", name="Added Hospital", ae_title="RADD_PACS")))
    made = Site.objects.get(code="RADD")
    [added] = events("site.add")
    assert (added.username, added.detail) == (manager.username, {
        "site": "RADD", "name": "Added Hospital", "ae_title": "RADD_PACS", "split_rule": "split",
        "declared_units": {}, "date_format": "DMY"})

    admin = make_user("admin")  # deleting is a superuser's
    leaving = [Site.objects.create(code=code, name=f"Leaving {code}") for code in ("RLA", "RLB")]
    client.force_login(admin)
    client.post(f"/admin/accounts/site/{made.pk}/delete/", {"post": "yes"})
    client.post("/admin/accounts/site/", {"action": "delete_selected", "post": "yes",
                                          "_selected_action": [s.pk for s in leaving]})
    assert not Site.objects.filter(code__in=["RADD", "RLA", "RLB"]).exists()
    deleted = events("site.delete")
    assert [(e.username, e.detail["site"]) for e in deleted] == [
        (admin.username, "RADD"), (admin.username, "RLA"), (admin.username, "RLB")]
    assert deleted[0].detail["ae_title"] == "RADD_PACS"


def test_site_add_on_the_command_line_is_audited(monkeypatch):
    made = run_cli(monkeypatch, "site", "add", "rcli", "--name", "Command Line General",
                   "--ae-title", "RCLI_PACS", "--split", "training")
    assert made.code == 0, made.err
    [event] = events("site.add")
    assert event.username.startswith("cli:")
    assert (event.detail["site"], event.detail["ae_title"], event.detail["split_rule"]) == (
        "RCLI", "RCLI_PACS", "training")


def test_the_audit_log_lists_site_events_as_a_kind(client, site, make_user):
    manager = make_user("data-manager")
    client.force_login(manager)
    client.post(f"/admin/accounts/site/{site.pk}/change/", site_form(site, name="Renamed"))
    audit(manager, "research.open")  # another kind, filtered out
    page = client.get("/audit/", {"kind": "site"}).content.decode()
    assert '<option value="site" selected>' in page
    assert "site.change" in page and "research.open" not in page

