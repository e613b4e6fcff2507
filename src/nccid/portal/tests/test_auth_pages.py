"""Sign-in, throttling, CSRF, logout and password change on the portal pages."""

from __future__ import annotations

import html

import pytest
from conftest import TEST_PASSWORD
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = ["/", "/guidance/", "/faq/", "/upload/positive/", "/upload/negative/", "/upload/isaric/",
         "/uploads/", "/password/", "/templates/positive.xlsx"]


@pytest.mark.parametrize("url", PAGES)
def test_every_page_but_login_needs_a_signed_in_user(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_login_page_uses_the_nhs_layout(client):
    response = client.get("/login/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "National COVID-19 Chest Imaging Database" in body
    assert "nhsuk-frontend.min.css" in body and "nhsuk-header" in body
    assert "https://" not in body.split("<body>")[0]  # no CDN in the head


def sign_in(client: Client, username: str, password: str = TEST_PASSWORD):
    return client.post("/login/", {"username": username, "password": password})


def test_signing_in_lands_on_home_with_the_header_links(client, site, make_user):
    user = make_user("uploader", site)
    response = sign_in(client, user.username)
    assert response.status_code == 302 and response["Location"] == "/"
    body = client.get("/").content.decode()
    for text in ("Guidance And Documentation", "FAQ", "Upload Covid (Positive) Data",
                 "Upload Covid Status (Negative) Data", "Upload Covid ISARIC Data",
                 "Change Password", "Logout", "My uploads", site.name):
        assert text in body, text
    assert "Review queue" not in body and "Dashboard" not in body


def test_data_manager_sees_dashboard_and_review_links_but_no_upload_pages(client, make_user):
    manager = make_user("data-manager")
    client.force_login(manager)
    body = client.get("/").content.decode()
    assert "Dashboard" in body and "Review queue" in body and "Summary" in body
    assert "Upload Covid (Positive) Data" not in body
    assert client.get("/upload/positive/").status_code == 403  # told: the page exists


@pytest.mark.parametrize(("role", "opening"), [
    ("uploader", "Send your site's chest imaging"),
    ("data-manager", "Run the national database"),
    ("admin", "Run the national database"),
    ("researcher", "Pseudonymised chest imaging and clinical data for research"),
])
def test_home_opens_with_what_the_service_is_for_to_this_role(client, site, make_user, role,
                                                                opening):
    client.force_login(make_user(role, site if role == "uploader" else None))
    lede = client.get("/").content.decode().split('class="nhsuk-lede-text">', 1)[1]
    assert html.unescape(lede).startswith(opening)


def test_an_admins_home_links_the_admin_site_and_every_sites_uploads(client, site, make_user):
    client.force_login(make_user("admin"))
    cards = client.get("/").content.decode().split('nhsuk-card-group">', 1)[1]
    assert 'id="admin-card"' in cards and 'href="/admin/"' in cards
    assert "Uploads by site" in cards and "What your site has sent" not in cards
    client.force_login(make_user("uploader", site))
    cards = client.get("/").content.decode().split('nhsuk-card-group">', 1)[1]
    assert "What your site has sent" in cards and 'href="/admin/"' not in cards


def test_a_researcher_finds_how_to_reach_the_data_on_research_access(client, site, make_user):
    researcher = make_user("researcher")
    client.force_login(researcher)
    home = client.get("/").content.decode()
    assert home.count('href="/research/"') == 2  # the header and the home page's card
    page = client.get("/research/")
    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert "Sets you may query</dt>" in text and ">training</dd>" in text
    assert f"nccid user token {researcher.username}" in text  # how to get a token
    assert "http://testserver/api/research/cohort/count" in text
    assert f'nccid.research.open("{researcher.username}"' in text
    assert 'href="/api/docs"' in text and "/api/research/withdrawn" in text
    for role, who in (("uploader", site), ("data-manager", None)):
        client.force_login(make_user(role, who))
        assert client.get("/research/").status_code == 403
    client.force_login(make_user("admin"))
    assert client.get("/research/").status_code == 200


def test_researcher_cannot_reach_upload_pages(client, make_user):
    client.force_login(make_user("researcher"))
    assert client.get("/upload/isaric/").status_code == 403
    assert client.get("/faq/").status_code == 200


def test_wrong_password_shows_an_error_and_does_not_sign_in(client, site, make_user):
    user = make_user("uploader", site)
    response = sign_in(client, user.username, "not-the-password")
    assert response.status_code == 200
    assert "There is a problem" in response.content.decode()
    assert client.get("/").status_code == 302


def test_five_failures_lock_the_account_even_with_the_right_password(client, site, make_user):
    user = make_user("uploader", site)
    for _ in range(4):
        assert sign_in(client, user.username, "wrong-password-1").status_code == 200
    locked = sign_in(client, user.username, "wrong-password-1")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    # The right password no longer gets in while the lock lasts.
    again = sign_in(client, user.username)
    assert again.status_code == 429
    assert client.get("/").status_code == 302


def test_an_administrator_lifts_a_lock_by_username_as_the_faq_says(client, site, make_user):
    """A password reset does not lift the lock (the FAQ said it did); the documented command
    does, the user's right password then signing in."""
    from django.core.management import call_command

    user = make_user("uploader", site)
    for _ in range(5):
        sign_in(client, user.username, "wrong-password-1")
    user.set_password("Amber-Lantern-Quarry-42")
    user.save()
    assert sign_in(client, user.username, "Amber-Lantern-Quarry-42").status_code == 429
    call_command("axes_reset_username", user.username, verbosity=0)
    assert sign_in(client, user.username, "Amber-Lantern-Quarry-42").status_code == 302
    faq = client.get("/faq/").content.decode()
    assert "axes_reset_username" not in faq and "administrator" in faq


def test_csrf_is_enforced_on_login_logout_and_upload(site, make_user):
    user = make_user("uploader", site)
    strict = Client(enforce_csrf_checks=True)
    assert sign_in(strict, user.username).status_code == 403
    strict.force_login(user)
    assert strict.post("/logout/").status_code == 403
    assert strict.post("/upload/positive/", {}).status_code == 403
    assert strict.post("/password/", {}).status_code == 403
    # With the token from the page the same form works.
    page = strict.get("/upload/positive/")
    token = page.context["csrf_token"]
    assert strict.post("/logout/", {"csrfmiddlewaretoken": str(token)}).status_code == 302


def test_logout_signs_out_on_a_post_only(client, site, make_user):
    client.force_login(make_user("uploader", site))
    asked = client.get("/logout/")  # a page with the Sign out button, signing nobody out
    assert asked.status_code == 200 and "Sign out</button>" in asked.content.decode()
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302
    signed_out = client.get("/logout/")
    assert signed_out.status_code == 302 and signed_out["Location"] == "/login/"


def test_change_password_applies_djangos_validators(client, site, make_user):
    user = make_user("uploader", site)
    client.force_login(user)
    weak = client.post("/password/", {"old_password": TEST_PASSWORD,
                                      "new_password1": "12345678", "new_password2": "12345678"})
    body = weak.content.decode()
    assert weak.status_code == 200 and "There is a problem" in body
    assert "too short" in body and "entirely numeric" in body
    new = "Amber-Lantern-Quarry-42"
    done = client.post("/password/", {"old_password": TEST_PASSWORD,
                                      "new_password1": new, "new_password2": new}, follow=True)
    assert "Your password has been changed." in done.content.decode()
    user.refresh_from_db()
    assert user.check_password(new)
    assert user.password.startswith("argon2")
    # Still signed in after the change (session hash updated).
    assert client.get("/").status_code == 200


def change_password(client: Client, old_password: str):
    new = "Amber-Lantern-Quarry-42"
    return client.post("/password/", {"old_password": old_password,
                                      "new_password1": new, "new_password2": new})


def test_wrong_old_passwords_count_as_failed_sign_ins_and_lock(client, site, make_user):
    user = make_user("uploader", site)
    client.force_login(user)
    for guess in range(4):
        wrong = change_password(client, f"guess-{guess}")
        assert wrong.status_code == 200 and "There is a problem" in wrong.content.decode()
    assert change_password(client, "guess-4").status_code == 429
    # Locked: neither a sixth guess nor the right old password is tried.
    assert change_password(client, "guess-5").status_code == 429
    assert change_password(client, TEST_PASSWORD).status_code == 429
    user.refresh_from_db()
    assert user.check_password(TEST_PASSWORD)
    # The lock is the sign-in lock: the account cannot sign in elsewhere either.
    assert sign_in(Client(), user.username).status_code == 429


def test_session_expires(settings):
    assert settings.SESSION_COOKIE_AGE <= 12 * 60 * 60
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
