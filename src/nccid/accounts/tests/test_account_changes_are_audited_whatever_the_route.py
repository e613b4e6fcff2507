"""A password set, or what an account may do changed, by a route that is neither the admin site
nor nccid's own commands (``nccid manage changepassword``/``createsuperuser``, a Django shell)
is audited all the same, at the model, under the OS user running it; before, a data manager's
password could be set unrecorded and the vault's audit then named that person for reveals
made by whoever set it. A sign-in that only re-hashes the password is no change."""

from __future__ import annotations

import getpass

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from nccid.accounts.models import AuditEvent, Role, User
from nccid.accounts.signals import acting_as
from nccid.cli.tests.clirun import run_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
NEW_PASSWORD = "Copper-Meadow-Lantern-58"
OS_USER = f"cli:{getpass.getuser()}"


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def sign_in(client, account: User, password: str):
    return client.post("/login/", {"username": account.username, "password": password})


# transaction: Django's command runner closes every connection when it ends (on PostgreSQL
# that closed the test's own, inside its transaction).
@pytest.mark.django_db(transaction=True, databases=["default", "vault"])
def test_manage_changepassword_is_audited_under_the_os_user(make_user, monkeypatch):
    manager = make_user("data-manager")
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": NEW_PASSWORD)
    ran = run_cli(monkeypatch, "manage", "changepassword", manager.username)
    assert ran.code == 0, ran.err
    manager.refresh_from_db()
    assert manager.check_password(NEW_PASSWORD)
    [event] = events("account.password")
    assert (event.username, event.detail) == (
        OS_USER, {"account": manager.username, "usable": True})
    assert NEW_PASSWORD not in str(event.detail) and manager.password not in str(event.detail)
    assert not events("account.change")


def test_manage_createsuperuser_is_audited_as_an_account_made(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", NEW_PASSWORD)
    call_command("createsuperuser", interactive=False, username="root.two", email="")
    [event] = events("account.add")
    assert event.username == OS_USER
    assert (event.detail["account"], event.detail["is_superuser"]) == ("root.two", True)


def test_a_shell_granting_a_role_flags_and_permissions_is_audited(make_user):
    account = make_user("researcher")
    account.role, account.is_staff, account.is_active = Role.DATA_MANAGER, True, False
    account.save()
    [change] = events("account.change")
    assert (change.username, change.detail["changes"]) == (OS_USER, {
        "role": ["researcher", "data-manager"], "is_staff": [False, True],
        "is_active": [True, False]})

    permission = Permission.objects.get(codename="change_user")
    account.user_permissions.add(permission)
    Group.objects.create(name="helpers").user_set.add(account)  # from the group's side
    grants = [e.detail["changes"] for e in events("account.change")[1:]]
    assert grants == [{"user_permissions": [[], ["accounts.change_user"]]},
                      {"groups": [[], ["helpers"]]}]


def test_a_hash_set_directly_is_a_password_change_named_by_the_route(make_user):
    account = make_user("uploader", username="up.one")
    with acting_as("cli:operator"):
        account.password = make_password(NEW_PASSWORD)
        account.save(update_fields=["password"])
    [event] = events("account.password")
    assert (event.username, event.detail) == ("cli:operator", {"account": "up.one", "usable": True})


def test_a_sign_in_that_rehashes_the_password_is_no_change(make_user, client):
    account = make_user("researcher")
    User.objects.filter(pk=account.pk).update(
        password=make_password(NEW_PASSWORD, hasher="pbkdf2_sha256"))
    assert sign_in(client, account, NEW_PASSWORD).status_code == 302
    account.refresh_from_db()
    assert account.password.startswith("argon2")  # re-hashed with the first hasher
    assert not events("account.password")


def test_a_sign_in_or_an_unchanged_save_records_nothing(make_user, client):
    account = make_user("researcher")
    assert sign_in(client, account, "Correct-Horse-Battery-9").status_code == 302
    account.refresh_from_db()
    assert account.last_login is not None
    account.save()
    assert not AuditEvent.objects.filter(action__startswith="account.").exists()


def test_a_password_changed_on_the_portal_is_audited_as_set_by_its_owner(make_user, client):
    account = make_user("researcher")
    client.force_login(account)
    sent = client.post("/password/", {"old_password": "Correct-Horse-Battery-9",
                                      "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert sent.status_code == 302
    [event] = events("account.password")
    assert (event.username, event.detail) == (account.username,
                                              {"account": account.username, "usable": True})


def test_deleting_an_account_in_a_shell_is_audited(make_user):
    account = make_user("researcher", username="r.gone")
    User.objects.filter(pk=account.pk).delete()
    [event] = events("account.delete")
    assert (event.username, event.detail["account"]) == (OS_USER, "r.gone")
