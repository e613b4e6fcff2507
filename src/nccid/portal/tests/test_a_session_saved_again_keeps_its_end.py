"""A session ends SESSION_COOKIE_AGE after signing in, however it is used: a page that stores
something in the session (a withdrawal's result, a message) saves it again, and Django's own
store then moved its end to 8 hours from that save."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _stored_end(key: str):
    return Session.objects.get(session_key=key).expire_date


def test_storing_something_in_a_signed_in_session_keeps_its_end(client, make_user):
    client.force_login(make_user("data_manager"))
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    ends = (timezone.now() + timedelta(minutes=20)).replace(microsecond=0)  # 7 h 40 min in
    Session.objects.filter(session_key=key).update(expire_date=ends)

    session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    session["withdrawal_result"] = {"pseudonym": "NCCID-TEST"}
    session.save()

    assert _stored_end(key) == ends


def test_a_new_session_still_gets_its_full_age(client, make_user):
    before = timezone.now()
    client.force_login(make_user("uploader"))
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert before + age - timedelta(seconds=1) <= _stored_end(key) <= timezone.now() + age
