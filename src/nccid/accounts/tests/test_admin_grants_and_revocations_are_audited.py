"""Access granted or revoked in the admin site is audited as the CLI's changes are: who made,
changed or deleted an account, and each changed field as [old, new] (role, site, research
sets, flags, groups, permissions), or that a password was set; never a password or its hash."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group

from nccid.accounts.models import AuditEvent, Role, User, audit
from nccid.cli.tests.clirun import run_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
NEW_PASSWORD = "Copper-Meadow-Lantern-58"


def change_form(user: User, **fields) -> dict:
    """What the admin's change page posts for ``user`` as it is, with ``fields`` changed."""
    form = {"username": user.username, "first_name": "", "last_name": "", "email": "",
            "date_joined_0": "2026-01-05", "date_joined_1": "09:00:00", "role": user.role,
            "site": user.site_id or "", "research_sets": json.dumps(user.research_sets),
            "_save": "Save"}
    form.update({"is_active": "on"} if user.is_active else {})
    form.update(fields)
    return {name: value for name, value in form.items() if value is not None}


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def no_password_in(event: AuditEvent, user: User) -> bool:
    user.refresh_from_db()
    said = json.dumps(event.detail)
    return NEW_PASSWORD not in said and user.password not in said and "password\"" not in said


def test_a_data_manager_revoking_a_researchers_access_is_audited(client, site, make_user):
    manager = make_user("data-manager")
    researcher = make_user("researcher")
    client.force_login(manager)
    saved = client.post(f"/admin/accounts/user/{researcher.pk}/change/",
                        change_form(researcher, research_sets="[]", is_active=None, site=site.pk))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    [event] = events("account.change")
    assert event.username == manager.username
    assert event.detail == {"account": researcher.username, "changes": {
        "research_sets": [["training"], []], "is_active": [True, False], "site": [None, "RTEST"]}}
    assert no_password_in(event, researcher)

    # Saved again unchanged: nothing to audit.
    researcher.refresh_from_db()
    again = client.post(f"/admin/accounts/user/{researcher.pk}/change/", change_form(researcher))
    assert again.status_code == 302 and len(events("account.change")) == 1


def test_a_superuser_granting_roles_flags_and_groups_is_audited(client, make_user):
    admin = make_user("admin")
    researcher = make_user("researcher")
    group = Group.objects.create(name="reviewers")
    client.force_login(admin)
    saved = client.post(f"/admin/accounts/user/{researcher.pk}/change/", change_form(
        researcher, role=Role.DATA_MANAGER, is_superuser="on", groups=[group.pk]))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    [event] = events("account.change")
    assert (event.username, event.detail["account"]) == (admin.username, researcher.username)
    assert event.detail["changes"] == {
        "role": ["researcher", "data-manager"], "is_staff": [False, True],
        "is_superuser": [False, True], "groups": [[], ["reviewers"]]}


def test_accounts_added_and_deleted_in_the_admin_are_audited(client, site, make_user):
    manager = make_user("data-manager")
    client.force_login(manager)
    client.post("/admin/accounts/user/add/", {
        "username": "new.uploader", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD,
        "usable_password": "true", "_save": "Save"})
    made = User.objects.get(username="new.uploader")
    [added] = events("account.add")
    assert added.username == manager.username
    assert added.detail == {"account": "new.uploader", "role": "uploader", "site": None,
                            "research_sets": [], "is_active": True, "is_staff": False,
                            "is_superuser": False, "groups": [], "user_permissions": []}
    assert no_password_in(added, made)

    admin = make_user("admin")
    leaving = [make_user("researcher", username=name) for name in ("r.one", "r.two")]
    client.force_login(admin)
    client.post(f"/admin/accounts/user/{made.pk}/delete/", {"post": "yes"})
    client.post("/admin/accounts/user/", {"action": "delete_selected", "post": "yes",
                                          "_selected_action": [u.pk for u in leaving]})
    assert not User.objects.filter(username__in=["new.uploader", "r.one", "r.two"]).exists()
    deleted = events("account.delete")
    assert [(e.username, e.detail["account"]) for e in deleted] == [
        (admin.username, "new.uploader"), (admin.username, "r.one"), (admin.username, "r.two")]
    assert deleted[1].detail["research_sets"] == ["training"]


def test_a_password_set_in_the_admin_is_audited_without_it(client, make_user):
    manager = make_user("data-manager")
    researcher = make_user("researcher")
    client.force_login(manager)
    sent = client.post(f"/admin/accounts/user/{researcher.pk}/password/", {
        "password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})
    assert sent.status_code == 302
    researcher.refresh_from_db()
    assert researcher.check_password(NEW_PASSWORD)
    [event] = events("account.password")
    assert (event.username, event.detail) == (
        manager.username, {"account": researcher.username, "usable": True})
    assert no_password_in(event, researcher)

    refused = client.post(f"/admin/accounts/user/{researcher.pk}/password/", {
        "password1": NEW_PASSWORD, "password2": "Another-One-99", "usable_password": "true"})
    assert refused.status_code == 200 and len(events("account.password")) == 1


def test_user_add_on_the_command_line_is_audited(monkeypatch):
    made = run_cli(monkeypatch, "user", "add", "rob", "--role", "researcher",
                   "--research-set", "training", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert made.code == 0, made.err
    [event] = events("account.add")
    assert event.username.startswith("cli:")
    assert (event.detail["account"], event.detail["research_sets"]) == ("rob", ["training"])


def test_the_audit_log_lists_account_events_as_a_kind(client, make_user):
    manager = make_user("data-manager")
    researcher = make_user("researcher")
    client.force_login(manager)
    client.post(f"/admin/accounts/user/{researcher.pk}/change/",
                change_form(researcher, research_sets="[]"))
    audit(manager, "research.open")  # another kind, filtered out
    page = client.get("/audit/", {"kind": "account"}).content.decode()
    assert '<option value="account" selected>' in page
    assert "account.change" in page and "research.open" not in page
