"""A request sent after its session ended, and sent to sign in, is told why on the sign-in
page; so is the sign-in page a page's script goes to when the session ends
(static/portal/js/session-timeout.js, which warns WARNING_SECONDS before). Every signed-in
page says when its session ends. The session cookie lives until the browser closes; the
session behind it ends SESSION_COOKIE_AGE after signing in (saving it again keeps that end:
nccid.portal.sessions). Without
this, a form sent after that landed on a plain sign-in page, nothing saying the user was
signed out and their action not done. Nothing from the request (what was typed) is kept:
only the message. GET /session/left/ tells the script, at the end its page was given, whether
the session lasts after all (another tab started a new one), so that it does not leave a page
with what was typed while the session is still valid; asking saves nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import resolve_url
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

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
        if request.path == resolve_url("portal:session_left"):  # asks, acts on nothing: no message
            return self.get_response(request)
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
    user, session = getattr(request, "user", None), getattr(request, "session", None)
    if user is None or session is None:  # an error page drawn before the middleware ran
        return None
    if not user.is_authenticated or session.session_key is None:
        return None
    at = (Session.objects.filter(session_key=request.session.session_key)
          .values_list("expire_date", flat=True).first())
    return None if at is None else _end_at(at)


def _end_at(at: datetime) -> SessionEnd:
    now = timezone.now()
    return SessionEnd(at, until_text(at, now), max(0, math.ceil((at - now).total_seconds())))


@never_cache
@require_GET
def session_left(request: HttpRequest) -> JsonResponse:
    """GET /session/left/: how long the browser's session has left, asked by session-timeout.js
    at the end its page was given before it leaves the page or holds back a form (another tab
    may have started a new session). Read from the session's row, never through
    request.session: nothing is saved (no end moves), and an ended session's cookie is not
    deleted, so the sign-in page the script goes to can still say the session ended."""
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
    row = Session.objects.filter(session_key=key, expire_date__gt=timezone.now()).first()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if row is None or SESSION_KEY not in store().decode(row.session_data):
        return JsonResponse({"seconds_left": 0})  # ended, signed out, or never signed in
    end = _end_at(row.expire_date)
    return JsonResponse({"seconds_left": end.seconds_left, "ends": end.text,
                         "datetime": timezone.localtime(end.at).isoformat()})


def until_text(at: datetime, now: datetime) -> str:
    """"17:40", "06:30 tomorrow" or "06:30 on 4 Jul", in the portal's time zone."""
    local, today = timezone.localtime(at), timezone.localtime(now).date()
    clock = format_date(local, "H:i")
    if local.date() == today:
        return clock
    if local.date() == today + timedelta(days=1):
        return f"{clock} tomorrow"
    return f"{clock} on {format_date(local, 'j M')}"
