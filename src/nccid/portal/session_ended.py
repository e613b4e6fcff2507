"""A request sent after its session ended, and sent to sign in, is told why on the sign-in
page; so is the sign-in page a page's script goes to when the session ends
(static/portal/js/session-timeout.js, which warns WARNING_SECONDS before). Every signed-in
page says when its session ends. The session cookie lives until the browser closes; the
session behind it ends SESSION_COOKIE_AGE after signing in (saving it again keeps that end:
nccid.portal.sessions). Without
this, a form sent after that landed on a plain sign-in page, nothing saying the user was
signed out and their action not done. Nothing from the request (what was typed) is kept:
only the message."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.sessions.models import Session
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils import timezone
from django.utils.dateformat import format as format_date

# How long before its end a page warns that the session is ending (docs/portal.md says so).
WARNING_SECONDS = 5 * 60


def ended_message() -> str:
    hours = settings.SESSION_COOKIE_AGE // 3600
    return (f"You were signed out because your session ended: a session ends {hours} hours after "
            "signing in, even while you are using the portal. What you were doing was not saved "
            "or sent: sign in and do it again.")


class SessionEndedMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ended = _session_ended(request)  # before the view: signing out also removes the session
        if ended and _is_sign_in_page(request):
            # Where a page's script goes at the session's end: told before the page is drawn.
            messages.warning(request, ended_message())
            return self.get_response(request)
        response = self.get_response(request)
        if ended and _to_sign_in(response):
            messages.warning(request, ended_message())
        return response


def _session_ended(request: HttpRequest) -> bool:
    """The request names a session that no longer exists (expired, or removed after expiry)."""
    if not request.COOKIES.get(settings.SESSION_COOKIE_NAME):  # none, or one deleted ("")
        return False
    request.session.keys()  # loads it: a session that is not found (or expired) forgets its key
    return request.session.session_key is None


def _to_sign_in(response: HttpResponse) -> bool:
    return (response.status_code in (301, 302, 303)
            and urlsplit(response.get("Location", "")).path == resolve_url(settings.LOGIN_URL))


def _is_sign_in_page(request: HttpRequest) -> bool:
    return request.method == "GET" and request.path == resolve_url(settings.LOGIN_URL)


@dataclass(frozen=True)
class SessionEnd:
    at: datetime
    text: str  # "17:40", London time as the portal shows times
    seconds_left: int  # rounded up: a page's script never counts down before the server
    warning_seconds: int = WARNING_SECONDS

    @property
    def warning_minutes(self) -> int:
        return self.warning_seconds // 60

    @property
    def hours(self) -> int:
        return settings.SESSION_COOKIE_AGE // 3600


def session_end(request: HttpRequest) -> SessionEnd | None:
    """When the signed-in user's session ends, as stored (the server signs out then), or None
    signed out. The database backend only (the portal's): others store no end to read."""
    if not request.user.is_authenticated or request.session.session_key is None:
        return None
    at = (Session.objects.filter(session_key=request.session.session_key)
          .values_list("expire_date", flat=True).first())
    if at is None:
        return None
    now = timezone.now()
    return SessionEnd(at, until_text(at, now), max(0, math.ceil((at - now).total_seconds())))


def until_text(at: datetime, now: datetime) -> str:
    """"17:40", "06:30 tomorrow" or "06:30 on 4 Jul", in the portal's time zone."""
    local, today = timezone.localtime(at), timezone.localtime(now).date()
    clock = format_date(local, "H:i")
    if local.date() == today:
        return clock
    if local.date() == today + timedelta(days=1):
        return f"{clock} tomorrow"
    return f"{clock} on {format_date(local, 'j M')}"
