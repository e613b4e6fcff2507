"""``nccid site …`` and ``nccid user …``: user mistakes are one line on stderr, exit 1, no traceback."""

from __future__ import annotations

import pytest

from nccid.accounts.models import Site, User
from nccid.cli.tests.clirun import run_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
GOOD = "Winter-Lighthouse-42\n"


def test_site_and_user_add_then_list(monkeypatch):
    added = run_cli(monkeypatch, "site", "add", "rcli", "--name", "CLI Hospital",
                    "--ae-title", "RCLI_PACS", "--split", "validation")
    assert added.code == 0, added.err
    user = run_cli(monkeypatch, "user", "add", "cliup", "--role", "uploader", "--site", "RCLI",
                   "--password-stdin", stdin=GOOD)
    assert user.code == 0, user.err
    assert User.objects.get(username="cliup").site.code == "RCLI"
    listed = run_cli(monkeypatch, "site", "list")
    assert "RCLI" in listed.out and "RCLI_PACS" in listed.out and "validation" in listed.out


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["site", "add", "RTEST", "--name", "Again"], "", "site RTEST already exists"),
    (["site", "add", "RNEW", "--name", "New", "--ae-title", "RTEST_PACS"], "",
     "AE title 'RTEST_PACS' already belongs to site RTEST"),
    (["site", "add", "RNEW", "--name", "New", "--split", "half"], "", "split must be one of"),
    (["user", "add", "u1", "--role", "boss", "--password-stdin"], GOOD, "role must be one of"),
    (["user", "add", "u1", "--role", "uploader", "--site", "NOPE", "--password-stdin"], GOOD,
     "no site with code 'NOPE'"),
    (["user", "add", "u1", "--role", "researcher", "--password-stdin"], "abc\n",
     "password rejected"),
    (["user", "add", "u1", "--role", "researcher", "--password-stdin"], "\n",
     "the password is empty"),
    (["user", "token", "ghost"], "", "no user 'ghost'"),
])
def test_user_mistakes_exit_1_with_one_clear_line(site, monkeypatch, args, stdin, message):
    sites_before = list(Site.objects.values_list("code", "ae_title"))
    result = run_cli(monkeypatch, *args, stdin=stdin)
    assert result.code == 1
    assert result.err_text.startswith("error: ") and message in result.err_text
    assert "Traceback" not in result.err and result.out == ""
    assert list(Site.objects.values_list("code", "ae_title")) == sites_before
    assert not User.objects.filter(username="u1").exists()
