"""A data manager's home page links every page of theirs: revealing an NHS/CHI number,
removing a study and the sites and accounts of the admin site were reachable by address only.
Site staff and researchers see none of them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

MANAGERS_ONLY = ('href="/vault/"', 'href="/remove-study/"', 'href="/withdraw/"', 'href="/audit/"',
                 'href="/admin/"', 'href="/review/"')
# Pages that re-identify: not offered to administrators, who may query research data.
REIDENTIFYING = ('href="/vault/"', 'href="/remove-study/"', 'href="/withdraw/"', 'href="/review/"')


def cards_of(client) -> str:
    return client.get("/").content.decode().split('nhsuk-card-group">', 1)[1]


@pytest.mark.parametrize("role", ["data-manager", "admin"])
def test_a_data_managers_home_links_the_vault_study_removal_and_accounts(client, make_user, role):
    user = make_user(role)
    client.force_login(user)
    cards = cards_of(client)
    for link in MANAGERS_ONLY:
        assert (link in cards) is (link not in REIDENTIFYING or role == "data-manager"), link
    for card in ("vault-card", "remove-study-card", "withdraw-card", "review-card"):
        assert (f'id="{card}"' in cards) is (role == "data-manager")  # admins query research data
    assert ("Sites and accounts" if role == "data-manager" else "Administration") in cards
    client.force_login(user)
    assert client.get("/admin/").status_code == 200  # the card leads somewhere they may go


@pytest.mark.parametrize("role", ["uploader", "researcher"])
def test_site_staff_and_researchers_see_no_data_manager_pages(client, site, make_user, role):
    client.force_login(make_user(role, site if role == "uploader" else None))
    cards = cards_of(client)
    for link in MANAGERS_ONLY:
        assert link not in cards, link


def test_a_data_manager_the_admin_site_would_refuse_gets_no_accounts_card(client, make_user):
    manager = make_user("data-manager")
    manager.is_staff = False  # made outside the CLI and the admin, which both set it
    manager.save()
    client.force_login(manager)
    cards = cards_of(client)
    assert 'href="/admin/"' not in cards and 'href="/vault/"' in cards
