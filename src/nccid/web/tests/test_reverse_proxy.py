"""Behind the documented reverse proxy (``public_url`` and ``trusted_proxies``): sign-in
failures count against the client's own address, cookies are Secure and CSRF accepts the
public origin. Without those settings ``make run`` keeps working on plain http."""

from __future__ import annotations

import pytest
from conftest import TEST_PASSWORD
from django.test import Client, override_settings

from nccid.config import ConfigError, get_settings, reset_settings_cache
from nccid.web.proxy import proxy_settings

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

PUBLIC_URL = "https://nccid.example.nhs.uk"
PROXY = "127.0.0.1"  # nginx on the same host: every request arrives from here
BEHIND_ONE_PROXY = proxy_settings(PUBLIC_URL, 1)


def through_proxy(client_address: str, **options) -> Client:
    """A browser at client_address, reaching the portal through nginx (which appends it)."""
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=client_address,
                  HTTP_HOST="nccid.example.nhs.uk", **options)


def sign_in(client: Client, username: str, password: str = TEST_PASSWORD):
    return client.post("/login/", {"username": username, "password": password}, secure=True)


def test_one_clients_failures_through_the_proxy_do_not_lock_out_another(site, make_user):
    victim = make_user("uploader", site)
    with override_settings(**BEHIND_ONE_PROXY):
        attacker = through_proxy("203.0.113.9")
        for attempt in range(5):
            sign_in(attacker, f"nobody{attempt}", "wrong-password")
        assert sign_in(attacker, "nobody-else", "wrong-password").status_code == 429
        assert sign_in(through_proxy("198.51.100.7"), victim.username).status_code == 302


def test_a_forged_forwarded_for_does_not_escape_the_lock(site, make_user):
    # nginx appends the real address: what the client put before it is not trusted.
    with override_settings(**BEHIND_ONE_PROXY):
        for attempt in range(5):
            forged = through_proxy(f"10.0.0.{attempt}, 203.0.113.9")
            sign_in(forged, f"nobody{attempt}", "wrong-password")
        assert sign_in(through_proxy("10.9.9.9, 203.0.113.9"), "another", "x").status_code == 429


def test_without_trusted_proxies_the_forwarded_for_header_is_ignored(site, make_user):
    # Reached directly, a client could name any address: only the peer counts.
    with override_settings(**proxy_settings("", 0)):
        for attempt in range(5):
            sign_in(Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.0.0.{attempt}"),
                    f"nobody{attempt}", "wrong-password")
        spoofing = Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.9.9.9")
        assert sign_in(spoofing, "another", "x").status_code == 429


def test_cookies_are_secure_and_csrf_accepts_the_public_origin(site, make_user):
    user = make_user("uploader", site)
    with override_settings(**BEHIND_ONE_PROXY):
        browser = through_proxy("198.51.100.7", enforce_csrf_checks=True)
        page = browser.get("/login/", secure=True)
        assert page.cookies["csrftoken"]["secure"] is True
        token = page.context["csrf_token"]
        signed_in = browser.post("/login/", {"username": user.username, "password": TEST_PASSWORD,
                                             "csrfmiddlewaretoken": str(token)},
                                 secure=True, HTTP_ORIGIN=PUBLIC_URL)
        assert signed_in.status_code == 302
        assert signed_in.cookies["sessionid"]["secure"] is True
        elsewhere = browser.post("/logout/", {"csrfmiddlewaretoken": str(token)},
                                 secure=True, HTTP_ORIGIN="https://attacker.example.com")
        assert elsewhere.status_code == 403


def test_the_public_host_and_loopback_are_the_only_hosts_answered(client):
    with override_settings(**BEHIND_ONE_PROXY):
        assert client.get("/healthz", HTTP_HOST="nccid.example.nhs.uk").status_code != 400
        assert client.get("/healthz", HTTP_HOST="127.0.0.1:8000").status_code != 400
        assert client.get("/healthz", HTTP_HOST="evil.example.com").status_code == 400


def test_make_run_defaults_accept_any_host_over_plain_http():
    derived = proxy_settings("", 0)
    assert derived["ALLOWED_HOSTS"] == ["*"]
    assert derived["SESSION_COOKIE_SECURE"] is False and derived["CSRF_COOKIE_SECURE"] is False
    assert proxy_settings("http://10.1.2.3:8000", 0)["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize("value", ["nccid.example.nhs.uk", "ftp://nccid.example.nhs.uk",
                                   "https://nccid.example.nhs.uk/portal", "https://"])
def test_a_public_url_that_is_not_an_origin_is_refused(monkeypatch, value):
    monkeypatch.setenv("NCCID_PUBLIC_URL", value)
    reset_settings_cache()
    try:
        with pytest.raises(ConfigError, match="public_url"):
            get_settings()
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_public_url_and_trusted_proxies_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("NCCID_PUBLIC_URL", PUBLIC_URL + "/")
    monkeypatch.setenv("NCCID_TRUSTED_PROXIES", "2")
    reset_settings_cache()
    try:
        shown = get_settings().masked()
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert shown["public_url"] == PUBLIC_URL and shown["trusted_proxies"] == 2
