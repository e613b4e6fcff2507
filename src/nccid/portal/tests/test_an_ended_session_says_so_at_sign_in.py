"""A form sent after the session ended (its row expired) lands on the sign-in page saying the
user was signed out and that what they sent was not done, instead of a plain sign-in page;
nothing typed goes into the address. Signing out, or a first visit, says nothing of the kind."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

ENDED = "You were signed out because your session ended"
REASON = "Site query about a mismatched record, ticket 4411"


def end_the_session(client) -> None:
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert Session.objects.filter(session_key=key).update(
        expire_date=timezone.now() - timedelta(seconds=1)) == 1


def test_a_form_sent_after_the_session_ended_says_so_at_sign_in(client, make_user):
    client.force_login(make_user("data-manager"))
    assert client.get("/vault/").status_code == 200
    end_the_session(client)
    sent = client.post("/vault/", {"pseudonym": "NCCID-AUIB23VPF2BSIVG3", "reason": REASON})
    assert sent.status_code == 302 and sent["Location"].startswith("/login/")
    assert "NCCID" not in sent["Location"] and "ticket" not in sent["Location"]
    body = html.unescape(client.get(sent["Location"]).content.decode())
    hours = settings.SESSION_COOKIE_AGE // 3600
    assert ENDED in body and f"{hours} hours after signing in" in body
    assert "What you were doing was not saved or sent: sign in and do it again." in body
    assert REASON not in body
    again = html.unescape(client.get("/login/").content.decode())
    assert ENDED not in again  # said once


def test_signing_out_or_arriving_signed_out_says_nothing_of_an_ended_session(client, make_user):
    arrived = client.get("/vault/", follow=True)
    assert ENDED not in html.unescape(arrived.content.decode())
    client.force_login(make_user("data-manager"))
    signed_out = client.post("/logout/", follow=True)
    assert signed_out.redirect_chain[-1][0].startswith("/login/")
    assert ENDED not in html.unescape(signed_out.content.decode())
