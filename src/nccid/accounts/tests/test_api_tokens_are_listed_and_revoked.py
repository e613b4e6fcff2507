"""A data manager lists and revokes the API tokens they issue (``nccid user token list`` and
``revoke``, or the admin site), never seeing a token again; each issue and revocation is
audited and a revoked token is refused by the API at once."""

from __future__ import annotations

import pytest

from nccid.accounts.models import ApiToken, AuditEvent, User
from nccid.cli.tests.clirun import run_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _issue(monkeypatch, username: str, name: str) -> str:
    issued = run_cli(monkeypatch, "user", "token", username, "--name", name)
    assert issued.code == 0, issued.err
    return issued.out.strip()


def _api_me(client, token: str) -> int:
    return client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code


def test_tokens_are_listed_without_their_secret_and_revoked_by_number(site, make_user, monkeypatch,
                                                                     client):
    uploader = make_user("uploader", site=site)
    nightly = _issue(monkeypatch, uploader.username, "nightly")
    laptop = _issue(monkeypatch, uploader.username, "laptop")
    assert _api_me(client, nightly) == _api_me(client, laptop) == 200

    listed = run_cli(monkeypatch, "user", "token", "list", uploader.username)
    assert listed.code == 0, listed.err
    assert "nightly" in listed.out and "laptop" in listed.out
    assert nightly not in listed.out and laptop not in listed.out
    assert f"{nightly[:10]}…" in listed.out  # enough to tell which token a script holds
    first = ApiToken.objects.get(name="nightly")

    revoked = run_cli(monkeypatch, "user", "token", "revoke", str(first.pk))
    assert revoked.code == 0, revoked.err
    assert f"Revoked token {first.pk} of {uploader.username} (nightly" in revoked.out
    assert _api_me(client, nightly) == 401 and _api_me(client, laptop) == 200
    event = AuditEvent.objects.get(action="token.revoke")
    assert event.username.startswith("cli:")
    assert event.detail == {"account": uploader.username, "token": first.pk,
                            "name": "nightly", "prefix": nightly[:10]}
    assert AuditEvent.objects.filter(action="token.issue").count() == 2
    assert not any(token in str(e.detail) for e in AuditEvent.objects.all()
                   for token in (nightly, laptop))


def test_all_of_an_accounts_tokens_are_revoked_and_others_kept(site, make_user, monkeypatch, client):
    leaver, colleague = make_user("uploader", site=site), make_user("uploader", site=site)
    gone = [_issue(monkeypatch, leaver.username, name) for name in ("a", "b")]
    kept = _issue(monkeypatch, colleague.username, "c")
    result = run_cli(monkeypatch, "user", "token", "revoke", "--all-of", leaver.username)
    assert result.code == 0, result.err
    assert [_api_me(client, token) for token in (*gone, kept)] == [401, 401, 200]
    assert AuditEvent.objects.filter(action="token.revoke").count() == 2


@pytest.mark.parametrize(("args", "message"), [
    (["revoke"], "say which tokens"),
    (["revoke", "999"], "no token numbered 999"),
    (["list", "ghost"], "no user 'ghost'"),
    (["revoke", "--all-of", "ghost"], "no user 'ghost'"),
])
def test_token_mistakes_revoke_nothing(site, make_user, monkeypatch, client, args, message):
    token = _issue(monkeypatch, make_user("uploader", site=site).username, "job")
    result = run_cli(monkeypatch, "user", "token", *args)
    assert result.code == 1 and message in result.err_text and "Traceback" not in result.err
    assert _api_me(client, token) == 200 and not AuditEvent.objects.filter(action="token.revoke")


def test_numbers_not_of_the_named_account_revoke_nothing(site, make_user, monkeypatch, client):
    mine, theirs = make_user("uploader", site=site), make_user("uploader", site=site)
    _issue(monkeypatch, mine.username, "mine")
    other = _issue(monkeypatch, theirs.username, "theirs")
    number = ApiToken.objects.get(name="theirs").pk
    result = run_cli(monkeypatch, "user", "token", "revoke", str(number), "--all-of", mine.username)
    assert result.code == 1 and f"no token of '{mine.username}' numbered {number}" in result.err_text
    assert ApiToken.objects.count() == 2 and _api_me(client, other) == 200


def test_a_data_manager_sees_and_revokes_tokens_in_the_admin(site, make_user, client):
    manager = make_user("data-manager")
    uploader = make_user("uploader", site=site)
    token, secret = ApiToken.issue(uploader, "nightly")
    client.force_login(manager)
    listing = client.get("/admin/accounts/apitoken/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "nightly" in page and secret not in page and token.digest not in page
    assert client.get("/admin/accounts/apitoken/add/").status_code == 403

    confirmed = client.post(f"/admin/accounts/apitoken/{token.pk}/delete/", {"post": "yes"})
    assert confirmed.status_code == 302
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    event = AuditEvent.objects.get(action="token.revoke")
    assert event.username == manager.username and event.detail["account"] == uploader.username


def test_a_data_manager_cannot_revoke_an_administrators_tokens_in_the_admin(site, make_user, client):
    """As for passwords: other data managers' and administrators' accounts are a superuser's."""
    manager, peer, admin = make_user("data-manager"), make_user("data-manager"), make_user("admin")
    own, _ = ApiToken.issue(manager, "mine")
    theirs = [ApiToken.issue(user, "theirs")[0] for user in (peer, admin)]
    client.force_login(manager)
    for token in theirs:
        assert client.post(f"/admin/accounts/apitoken/{token.pk}/delete/",
                           {"post": "yes"}).status_code == 403
    bulk = client.post("/admin/accounts/apitoken/", {
        "action": "delete_selected", "post": "yes",
        "_selected_action": [own.pk, *(t.pk for t in theirs)]})
    assert bulk.status_code in (200, 403)  # Django's "not allowed" page, nothing deleted
    assert ApiToken.objects.count() == 3
    assert client.post(f"/admin/accounts/apitoken/{own.pk}/delete/", {"post": "yes"}).status_code == 302
    assert set(ApiToken.objects.values_list("user__username", flat=True)) == {
        peer.username, admin.username}
    assert User.objects.get(pk=admin.pk).is_active


def test_options_before_the_username_issue_a_token(site, make_user, monkeypatch):
    uploader = make_user("uploader", site=site)
    issued = run_cli(monkeypatch, "user", "token", "--name", "ci", uploader.username)
    assert issued.code == 0, issued.err
    assert ApiToken.objects.get(user=uploader).name == "ci"


def test_an_account_named_like_a_subcommand_is_issued_one_with_token_issue(site, make_user,
                                                                           monkeypatch):
    named_list = make_user("uploader", site=site, username="list")
    listed = run_cli(monkeypatch, "user", "token", "list")  # the subcommand, as documented
    assert listed.code == 0 and not ApiToken.objects.exists()
    issued = run_cli(monkeypatch, "user", "token", "issue", "list", "--name", "job")
    assert issued.code == 0, issued.err
    assert ApiToken.objects.get(user=named_list).name == "job"
