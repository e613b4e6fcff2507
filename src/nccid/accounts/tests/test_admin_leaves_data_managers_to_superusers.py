"""In the admin site a data manager manages site staff and researchers, never the roles that
manage: only a superuser makes an account a data manager or an administrator (a data manager
could otherwise set an account's password, promote it and sign in as a second data manager)."""

from __future__ import annotations

import pytest

from nccid.accounts.models import Role, User

ONLY_SUPERUSERS = "Only a superuser may make an account a data manager or an administrator"


def change_form(user: User, role: str) -> dict:
    """What the admin's change page posts for ``user``, with ``role`` chosen."""
    return {"username": user.username, "first_name": "", "last_name": "", "email": "",
            "is_active": "on", "date_joined_0": "2026-01-05", "date_joined_1": "09:00:00",
            "role": role, "site": user.site_id or "", "research_sets": "[]", "_save": "Save"}


def role_choices(client, user: User) -> set[str]:
    form = client.get(f"/admin/accounts/user/{user.pk}/change/").context["adminform"].form
    return {value for value, _ in form.fields["role"].choices}


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.DATA_MANAGER, Role.ADMIN])
def test_a_data_manager_cannot_promote_an_account_to_a_managing_role(client, site, make_user,
                                                                     role):
    manager = make_user("data-manager")
    researcher = make_user("researcher")
    client.force_login(manager)
    assert role_choices(client, researcher) == {Role.UPLOADER, Role.RESEARCHER}

    refused = client.post(f"/admin/accounts/user/{researcher.pk}/change/",
                          change_form(researcher, role))
    assert refused.status_code == 200  # the form again, saying why: not a 403 or 500 page
    assert ONLY_SUPERUSERS in refused.content.decode()
    researcher.refresh_from_db()
    assert (researcher.role, researcher.is_staff) == (Role.RESEARCHER, False)


@pytest.mark.django_db
def test_a_data_manager_still_changes_staff_and_their_own_account(client, site, make_user):
    manager = make_user("data-manager")
    uploader = make_user("uploader", site=site)
    client.force_login(manager)
    moved = client.post(f"/admin/accounts/user/{uploader.pk}/change/",
                        change_form(uploader, Role.RESEARCHER))
    assert moved.status_code == 302
    uploader.refresh_from_db()
    assert uploader.role == Role.RESEARCHER

    # Their own account keeps its role on saving, but cannot be raised to administrator.
    assert Role.DATA_MANAGER in role_choices(client, manager)
    assert Role.ADMIN not in role_choices(client, manager)
    kept = client.post(f"/admin/accounts/user/{manager.pk}/change/",
                       change_form(manager, Role.DATA_MANAGER))
    assert kept.status_code == 302
    raised = client.post(f"/admin/accounts/user/{manager.pk}/change/",
                         change_form(manager, Role.ADMIN))
    assert ONLY_SUPERUSERS in raised.content.decode()
    manager.refresh_from_db()
    assert (manager.role, manager.is_superuser) == (Role.DATA_MANAGER, False)


@pytest.mark.django_db
def test_a_data_manager_adds_accounts_of_staff_roles_only(client, make_user):
    manager = make_user("data-manager")
    client.force_login(manager)
    password = "Quiet-Harbour-Lantern-31"
    client.post("/admin/accounts/user/add/", {
        "username": "new.account", "password1": password, "password2": password,
        "usable_password": "true", "role": Role.DATA_MANAGER, "_save": "Save"})
    made = User.objects.get(username="new.account")
    assert (made.role, made.is_staff) == (Role.UPLOADER, False)  # the add page offers no role


@pytest.mark.django_db
def test_a_superuser_makes_data_managers(client, make_user):
    admin = make_user("admin")
    researcher = make_user("researcher")
    client.force_login(admin)
    assert Role.ADMIN in role_choices(client, researcher)
    done = client.post(f"/admin/accounts/user/{researcher.pk}/change/",
                       change_form(researcher, Role.DATA_MANAGER))
    assert done.status_code == 302
    researcher.refresh_from_db()
    assert (researcher.role, researcher.is_staff) == (Role.DATA_MANAGER, True)


@pytest.mark.django_db
def test_the_admin_password_page_is_the_portal_page_that_counts_wrong_passwords(client,
                                                                               make_user):
    """Django's admin page checks the old password without django-axes: a signed-in session
    could guess it without limit. It sends the user to the portal's page, which counts them."""
    from conftest import TEST_PASSWORD

    from nccid.portal.views import AxesCountedPasswordChangeForm

    manager = make_user("data-manager")
    client.force_login(manager)
    page = client.get("/admin/password_change/", follow=True)
    assert page.redirect_chain == [("/password/", 302)]
    assert isinstance(page.context["form"], AxesCountedPasswordChangeForm)
    # A password posted to the admin's address is never checked there, right or wrong.
    new = "Amber-Lantern-Quarry-42"
    for old in ("guess-1", TEST_PASSWORD):
        sent = client.post("/admin/password_change/", {
            "old_password": old, "new_password1": new, "new_password2": new})
        assert (sent.status_code, sent["Location"]) == (302, "/password/")
    manager.refresh_from_db()
    assert manager.check_password(TEST_PASSWORD)
