"""A token or site name holding square brackets ("nightly [prod]", "a [/] b") is printed as
typed by ``nccid user token list`` / ``revoke`` and ``nccid site add`` / ``list``: Rich read
such names as markup, dropping "[prod]" and failing with a MarkupError traceback on "[/]",
after ``revoke`` had already revoked. ``nccid vault audit`` shows them (in the events of
issuing a token or adding a site) as typed too."""

from __future__ import annotations

import pytest
from conftest import TEST_PASSWORD

from nccid.accounts.models import ApiToken
from nccid.cli.tests.clirun import run_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

NAMES = ["nightly [prod]", "a [/] b", "[bold]x[/bold]"]


@pytest.fixture(autouse=True)
def _wide_tables(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # each name on one table line


def test_token_names_are_listed_and_revoked_as_typed(site, make_user, monkeypatch):
    uploader = make_user("uploader", site=site)
    for name in NAMES:
        issued = run_cli(monkeypatch, "user", "token", uploader.username, "--name", name)
        assert issued.code == 0, issued.err

    listed = run_cli(monkeypatch, "user", "token", "list")
    assert (listed.code, listed.err) == (0, "")
    assert all(f" {name} " in listed.out for name in NAMES)

    stray = ApiToken.objects.get(name="a [/] b")
    revoked = run_cli(monkeypatch, "user", "token", "revoke", str(stray.pk))
    assert (revoked.code, revoked.err) == (0, "")
    assert f"Revoked token {stray.pk} of {uploader.username} (a [/] b, " in revoked.out
    assert run_cli(monkeypatch, "user", "token", "list", uploader.username).code == 0


def test_site_names_are_shown_as_typed(monkeypatch):
    added = run_cli(monkeypatch, "site", "add", "RBRK", "--name", "Royal [Test] Hospital [/]")
    assert (added.code, added.err) == (0, "")
    assert "Added site RBRK (Royal [Test] Hospital [/])" in added.out
    listed = run_cli(monkeypatch, "site", "list")
    assert (listed.code, listed.err) == (0, "")
    assert "Royal [Test] Hospital [/]" in listed.out


def test_vault_audit_shows_token_and_site_names_as_typed(site, make_user, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # each event's detail on one table line
    manager = make_user("data-manager")
    for name in NAMES:
        assert run_cli(monkeypatch, "user", "token", manager.username, "--name", name).code == 0
    assert run_cli(monkeypatch, "site", "add", "RBRA", "--name", "Royal [North] [/]").code == 0

    listed = run_cli(monkeypatch, "vault", "audit", "--user", manager.username,
                     "--password-stdin", stdin=TEST_PASSWORD + "\n")
    assert (listed.code, listed.err) == (0, "")
    assert all(f'"name": "{name}"' in listed.out for name in NAMES + ["Royal [North] [/]"])
