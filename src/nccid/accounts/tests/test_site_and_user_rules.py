"""Sites and accounts: the rules the CLI, portal and API share (``nccid.accounts.services``)."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent, Role, Site, User, audit
from nccid.accounts.services import AccountError, add_site, add_user

GOOD_PASSWORD = "Winter-Lighthouse-42"


@pytest.mark.django_db
def test_site_code_is_upper_cased_and_fields_stored():
    site = add_site(" rxq1 ", " Royal Example ", "RXQ_PACS", "training")
    assert (site.code, site.name, site.ae_title, site.split_rule) == (
        "RXQ1", "Royal Example", "RXQ_PACS", "training")


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "reason"), [
    (("R X", "Name"), "use 1-16 capital letters"),
    (("RTOOLONGSITECODE17", "Name"), "use 1-16 capital letters"),
    (("RX1", "  "), "needs a name"),
    (("RX1", "Name", None, "holdout"), "split must be one of training, validation, split"),
    (("RX1", "Name", "A" * 17), "AE title"),
    (("RX1", "Name", "BAD\\AE"), "no backslash"),
])
def test_bad_site_details_are_refused(args, reason):
    with pytest.raises(AccountError, match=reason):
        add_site(*args)
    assert not Site.objects.exists()


@pytest.mark.django_db
def test_duplicate_site_code_or_ae_title_is_refused(site):
    with pytest.raises(AccountError, match="site RTEST already exists"):
        add_site("rtest", "Again")
    with pytest.raises(AccountError, match="already belongs to site RTEST"):
        add_site("RNEW", "New", site.ae_title)
    assert list(Site.objects.values_list("code", flat=True)) == ["RTEST"]


@pytest.mark.django_db
def test_user_roles_set_staff_flags_and_hash_the_password(site):
    uploader = add_user("up1", Role.UPLOADER, GOOD_PASSWORD, "rtest")
    manager = add_user("dm1", Role.DATA_MANAGER, GOOD_PASSWORD)
    admin = add_user("ad1", Role.ADMIN, GOOD_PASSWORD)
    assert uploader.site == site and not uploader.is_staff and uploader.is_uploader
    assert manager.is_staff and not manager.is_superuser and manager.is_data_manager
    assert admin.is_superuser and admin.is_data_manager and admin.is_researcher
    assert uploader.password.startswith("argon2$") and GOOD_PASSWORD not in uploader.password
    assert uploader.check_password(GOOD_PASSWORD)


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "reason"), [
    (("u1", "superuser", GOOD_PASSWORD), "role must be one of uploader, data-manager"),
    (("u1", "uploader", GOOD_PASSWORD), "needs --site"),
    (("u1", "uploader", GOOD_PASSWORD, "NOPE"), "no site with code 'NOPE'"),
    (("u1", "researcher", "short1!"), "password rejected: .*too short"),
    (("u1", "researcher", "password123"), "password rejected: .*too common"),
    (("u1", "researcher", "8675309183746"), "password rejected: .*entirely numeric"),
    (("bad name", "researcher", GOOD_PASSWORD), "letters, digits"),
    (("", "researcher", GOOD_PASSWORD), "letters, digits"),
])
def test_bad_account_details_are_refused(site, args, reason):
    with pytest.raises(AccountError, match=reason):
        add_user(*args)
    assert not User.objects.exists()


@pytest.mark.django_db
def test_duplicate_username_is_refused(make_user):
    make_user("researcher", username="rita")
    with pytest.raises(AccountError, match="user 'rita' already exists"):
        add_user("rita", "researcher", GOOD_PASSWORD)


@pytest.mark.django_db
def test_researchers_never_get_the_validation_set(make_user):
    researcher = make_user("researcher")
    researcher.research_sets = ["training", "validation"]
    assert researcher.allowed_sets() == ["training"]


@pytest.mark.django_db
def test_audit_records_who_what_when_and_why(make_user):
    user = make_user("data-manager")
    event = audit(user, "export.create", pseudonym="NCCID-AAAAAAAAAAAAAAAA", reason="study 7",
                  rows=12)
    named = audit("cli:operator", "identity.link", rows=3)
    assert (event.username, event.action, event.reason, event.detail) == (
        user.username, "export.create", "study 7", {"rows": 12})
    assert event.at is not None and named.username == "cli:operator"
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "identity.link", "export.create"]  # newest first


@pytest.mark.django_db
def test_a_data_manager_cannot_change_another_managers_or_an_administrators_password(site, client):
    """Django's password view asks only for change permission: without this rule a data
    manager could set the administrator's password and sign in as them."""
    manager = add_user("dm2", Role.DATA_MANAGER, GOOD_PASSWORD)
    peer = add_user("dm3", Role.DATA_MANAGER, GOOD_PASSWORD)
    admin = add_user("ad2", Role.ADMIN, GOOD_PASSWORD)
    uploader = add_user("up2", Role.UPLOADER, GOOD_PASSWORD, "rtest")
    client.force_login(manager)
    chosen = "Taken-Over-By-Another-7"
    for target, allowed in ((admin, False), (peer, False), (uploader, True)):
        response = client.post(f"/admin/accounts/user/{target.pk}/password/",
                               {"password1": chosen, "password2": chosen, "usable_password": "true"})
        target.refresh_from_db()
        assert target.check_password(chosen) is allowed, target.username
        assert (response.status_code == 403) is not allowed
