"""The sign-in and change-password forms sent back empty say which field to fill, each error
linking to its field, and title the page "Error: "; wrong credentials keep the one message
that does not say which of the two was wrong."""

from __future__ import annotations

import html
import re

import pytest

pytestmark = pytest.mark.django_db

DJANGO_DEFAULT = "This field is required."


def title(body: str) -> str:
    return re.search(r"<title>(.*?)</title>", body, re.S).group(1).strip()


def summary_links(body: str) -> list[tuple[str, str]]:
    summary = body[body.index('class="nhsuk-error-summary"'):body.index("<h1")]
    return re.findall(r'<a href="#([^"]+)">([^<]+)</a>', summary)


def test_signing_in_with_nothing_typed_names_both_fields(client):
    body = html.unescape(client.post("/login/", {"username": "", "password": ""}).content.decode())
    assert title(body).startswith("Error: Sign in")
    assert summary_links(body) == [("id_username", "Enter your username"),
                                   ("id_password", "Enter your password")]
    assert "not right" not in body and DJANGO_DEFAULT not in body
    assert 'id="id_username-error"' in body and 'id="id_password-error"' in body


def test_signing_in_with_no_password_names_that_field(client):
    body = html.unescape(client.post("/login/", {"username": "someone"}).content.decode())
    assert summary_links(body) == [("id_password", "Enter your password")]


def test_wrong_credentials_keep_the_one_message_and_say_error_in_the_title(client, site,
                                                                           make_user):
    user = make_user("uploader", site)
    body = html.unescape(client.post("/login/", {"username": user.username,
                                                 "password": "not-the-password"}).content.decode())
    assert title(body).startswith("Error: Sign in")
    assert "The username or password is not right" in body
    assert summary_links(body) == []


def test_the_sign_in_page_alone_has_no_error_in_its_title(client):
    assert title(client.get("/login/").content.decode()).startswith("Sign in")


def test_changing_a_password_with_nothing_typed_names_each_field(client, site, make_user):
    client.force_login(make_user("uploader", site))
    assert title(client.get("/password/").content.decode()).startswith("Change password")
    body = html.unescape(client.post("/password/", {}).content.decode())
    assert title(body).startswith("Error: Change password")
    assert summary_links(body) == [("id_old_password", "Enter your current password"),
                                   ("id_new_password1", "Enter a new password"),
                                   ("id_new_password2", "Confirm the new password")]
    assert DJANGO_DEFAULT not in body
