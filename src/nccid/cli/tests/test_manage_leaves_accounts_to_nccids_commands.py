"""``nccid manage createsuperuser`` is refused, naming ``nccid user add … --role admin``: Django's
command made a superuser with the site uploader's role and no site, beside nccid's audited
command that sets the administrator's role. Django's commands nccid has none of still run
(``changepassword``: audited by ``nccid.accounts.signals``)."""

from __future__ import annotations

import pytest

from nccid.accounts.models import User

from .clirun import run_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_createsuperuser_is_refused_naming_nccids_own_command(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Copper-Meadow-Lantern-58")
    ran = run_cli(monkeypatch, "manage", "createsuperuser", "--username", "root.two",
                  "--email", "", "--noinput")
    assert ran.code == 1
    assert "nccid user add USERNAME --role admin" in ran.err_text
    assert not User.objects.filter(username="root.two").exists()


def test_other_commands_still_run(monkeypatch):
    ran = run_cli(monkeypatch, "manage", "check")
    assert ran.code == 0, ran.err
    assert "no issues" in ran.out
