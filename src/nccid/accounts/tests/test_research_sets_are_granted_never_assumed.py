"""A researcher queries only the sets a data manager granted: an empty list grants none, so
clearing it revokes access. Accounts made before this release with an empty list (which then
meant training) keep training through migration 0003; new ones start with none."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from nccid.accounts.models import Role, User
from nccid.accounts.services import AccountError, add_user
from nccid.cli.tests.clirun import run_cli
from nccid.research.cohort import ScopeError, scope_for

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
migration = importlib.import_module("nccid.accounts.migrations.0003_research_sets_granted_explicitly")
PASSWORD = "Winter-Lighthouse-42"


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.ADMIN])
def test_an_empty_list_grants_no_set(make_user, role):
    account = make_user(role, research_sets=[])
    assert account.allowed_sets() == []
    with pytest.raises(ScopeError, match="has no research set granted"):
        scope_for(account)


def test_a_data_manager_clearing_the_sets_in_the_admin_revokes_access(client, make_user):
    researcher = make_user("researcher")
    assert scope_for(researcher) == ("training",)
    client.force_login(make_user("data-manager"))
    form = {"username": researcher.username, "first_name": "", "last_name": "", "email": "",
            "is_active": "on", "date_joined_0": "2026-01-05", "date_joined_1": "09:00:00",
            "role": Role.RESEARCHER, "site": "", "research_sets": "[]", "_save": "Save"}
    for cleared in ("[]", ""):  # written as an empty list, or the box emptied
        researcher.research_sets = ["training"]
        researcher.save()
        saved = client.post(f"/admin/accounts/user/{researcher.pk}/change/",
                            {**form, "research_sets": cleared})
        assert saved.status_code == 302, saved.content.decode()[:2000]
        researcher.refresh_from_db()
        assert researcher.research_sets == [] and researcher.allowed_sets() == []
        with pytest.raises(ScopeError):
            scope_for(researcher)

    refused = client.post(f"/admin/accounts/user/{researcher.pk}/change/",
                          {**form, "research_sets": '["validation"]'})
    assert refused.status_code == 200 and "Only the training set is handed out" in refused.content.decode()
    researcher.refresh_from_db()
    assert researcher.research_sets == []


def test_a_new_account_is_granted_only_what_it_is_given():
    assert add_user("rita", "researcher", PASSWORD).allowed_sets() == []
    assert add_user("rob", "researcher", PASSWORD, research_sets=["training"]).allowed_sets() == ["training"]
    with pytest.raises(AccountError, match="'validation' cannot be granted"):
        add_user("val", "researcher", PASSWORD, research_sets=["validation"])
    with pytest.raises(AccountError, match="researchers and administrators only"):
        add_user("dora", "data-manager", PASSWORD, research_sets=["training"])
    assert not User.objects.filter(username__in=["val", "dora"]).exists()


def test_user_add_grants_a_set_when_asked_and_says_when_none_is(monkeypatch):
    granted = run_cli(monkeypatch, "user", "add", "rob", "--role", "researcher",
                      "--research-set", "training", "--password-stdin", stdin=PASSWORD + "\n")
    assert granted.code == 0, granted.err
    assert "may query: training" in granted.out
    assert User.objects.get(username="rob").allowed_sets() == ["training"]
    bare = run_cli(monkeypatch, "user", "add", "rita", "--role", "researcher",
                   "--password-stdin", stdin=PASSWORD + "\n")
    assert bare.code == 0, bare.err
    assert "no research set granted yet" in bare.out
    assert User.objects.get(username="rita").allowed_sets() == []


def test_the_upgrade_keeps_the_access_an_empty_list_gave(make_user):
    relied = [make_user("researcher", research_sets=[]), make_user("admin", research_sets=[])]
    others = {make_user("uploader", research_sets=[]).pk: [],
              make_user("data-manager", research_sets=[]).pk: [],
              make_user("researcher", research_sets=["validation"]).pk: ["validation"]}

    migration.grant_training_where_the_default_did(apps, None)

    for account in relied:
        account.refresh_from_db()
        assert account.research_sets == ["training"] and account.allowed_sets() == ["training"]
    assert {u.pk: u.research_sets for u in User.objects.filter(pk__in=others)} == others


def test_the_demo_researcher_and_administrator_query_the_training_set():
    from nccid.demo import _create_sites_and_accounts

    _create_sites_and_accounts()
    sets = {u.username: u.allowed_sets() for u in User.objects.all()}
    assert sets["researcher"] == ["training"] and sets["admin"] == ["training"]
