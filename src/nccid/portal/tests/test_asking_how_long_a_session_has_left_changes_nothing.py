"""GET /session/left/, which a page's script asks at the end it was given (another tab may have
started a new session), says how long the browser's session has left and changes nothing: the
stored end stays, no cookie is set or deleted, and an ended session still makes the sign-in
page say so afterwards."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

ENDED = "You were signed out because your session ended"


def _signed_in(client, make_user, left: timedelta) -> str:
    client.force_login(make_user("uploader"))
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + left)
    return key


def _stored(key: str):
    return Session.objects.filter(session_key=key).values_list("expire_date", "session_data").first()


def test_a_signed_in_session_is_told_its_seconds_left_and_nothing_is_saved(client, make_user):
    key = _signed_in(client, make_user, timedelta(hours=7, minutes=59))
    before = _stored(key)
    answer = client.get("/session/left/")
    assert answer.status_code == 200 and "no-store" in answer["Cache-Control"]
    left = answer.json()
    assert 7 * 3600 + 58 * 60 < left["seconds_left"] <= 7 * 3600 + 59 * 60
    ends = timezone.localtime(before[0])
    assert left["ends"] == ends.strftime("%H:%M") or left["ends"].startswith(ends.strftime("%H:%M "))
    assert _stored(key) == before  # the end and the data as they were
    assert settings.SESSION_COOKIE_NAME not in answer.cookies


def test_an_ended_session_is_told_none_left_and_the_sign_in_page_still_says_it_ended(client, make_user):
    key = _signed_in(client, make_user, timedelta(seconds=-1))
    answer = client.get("/session/left/")
    assert answer.json() == {"seconds_left": 0}
    assert answer.cookies == {}  # the cookie kept: the sign-in page can tell it ended
    assert _stored(key) is not None  # not removed either
    body = html.unescape(client.get("/login/?next=%2Fuploads%2F").content.decode())
    assert ENDED in body


def test_signed_out_or_never_signed_in_is_told_none_left(client, make_user):
    assert client.get("/session/left/").json() == {"seconds_left": 0}
    client.force_login(make_user("uploader"))
    client.post("/logout/")
    assert client.get("/session/left/").json() == {"seconds_left": 0}
    assert client.post("/session/left/").status_code == 405  # asked, never sent to
