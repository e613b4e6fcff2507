"""Every signed-in page says, without JavaScript, when its session ends ("Signed in until
17:40", London time), read from the session as stored, so the time shown is the time the
server signs the user out; the page's script gets the seconds left from the same place. A
session that ended sends the page's script to the sign-in page, which says so."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from nccid.portal.session_ended import WARNING_SECONDS, until_text

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

LONDON = ZoneInfo("Europe/London")
ENDED = "You were signed out because your session ended"


def set_session_end(client, ends: datetime) -> None:
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert Session.objects.filter(session_key=key).update(expire_date=ends) == 1


def test_a_signed_in_page_says_until_when_without_javascript(client, make_user):
    client.force_login(make_user("uploader"))
    ends = (timezone.now() + timedelta(hours=3, minutes=7)).replace(microsecond=0)
    set_session_end(client, ends)
    body = client.get("/").content.decode()
    shown = ends.astimezone(LONDON).strftime("%H:%M")
    said = re.search(r'Signed in until <time datetime="([^"]+)">([^<]+)</time>', body)
    assert said, "no 'Signed in until' in the header"
    assert datetime.fromisoformat(said.group(1)) == ends
    assert said.group(2) in (shown, f"{shown} tomorrow")
    left = int(re.search(r'data-seconds-left="(\d+)"', body).group(1))
    assert 3 * 3600 + 7 * 60 - 5 <= left <= 3 * 3600 + 7 * 60
    assert f'data-warning-seconds="{WARNING_SECONDS}"' in body


def test_signed_out_pages_say_nothing_of_a_session(client):
    body = client.get("/login/").content.decode()
    assert "Signed in until" not in body and "session-timeout" not in body


def test_the_time_is_london_time_and_names_the_day_when_it_is_not_today():
    summer_now = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
    assert until_text(datetime(2025, 7, 1, 16, 40, tzinfo=UTC), summer_now) == "17:40"  # BST
    winter_now = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
    assert until_text(datetime(2025, 1, 10, 17, 40, tzinfo=UTC), winter_now) == "17:40"  # GMT
    late = datetime(2025, 7, 1, 21, 30, tzinfo=UTC)  # 22:30 in London
    assert until_text(datetime(2025, 7, 2, 5, 30, tzinfo=UTC), late) == "06:30 tomorrow"
    assert until_text(datetime(2025, 7, 4, 5, 30, tzinfo=UTC), late) == "06:30 on 4 Jul"


def test_the_sign_in_page_the_script_goes_to_at_the_end_says_the_session_ended(client, make_user):
    client.force_login(make_user("uploader"))
    set_session_end(client, timezone.now() - timedelta(seconds=1))
    body = html.unescape(client.get("/login/?next=/uploads/").content.decode())
    assert ENDED in body
    assert "Signed in until" not in body
    again = html.unescape(client.get("/login/").content.decode())
    assert ENDED not in again  # said once: the ended session's cookie is gone


def test_a_live_session_sent_to_the_sign_in_page_goes_back_to_its_page(client, make_user):
    client.force_login(make_user("uploader"))
    back = client.get("/login/?next=/uploads/")
    assert back.status_code == 302 and back["Location"] == "/uploads/"
