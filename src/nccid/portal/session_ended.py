"""A request sent after its session ended, and sent to sign in, is told why on the sign-in
page. The session cookie lives until the browser closes; the session behind it ends
SESSION_COOKIE_AGE after signing in (it is saved again only when something is stored in it,
not on every request: SESSION_SAVE_EVERY_REQUEST is off). Without this, a form sent after
that landed on a plain sign-in page, nothing saying the user was signed out and their
action not done. Nothing from the request (what was typed) is kept: only the message."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url


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
        response = self.get_response(request)
        if ended and _to_sign_in(response):
            messages.warning(request, ended_message())
        return response


def _session_ended(request: HttpRequest) -> bool:
    """The request names a session that no longer exists (expired, or removed after expiry)."""
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return False
    request.session.keys()  # loads it: a session that is not found (or expired) forgets its key
    return request.session.session_key is None


def _to_sign_in(response: HttpResponse) -> bool:
    return (response.status_code in (301, 302, 303)
            and urlsplit(response.get("Location", "")).path == resolve_url(settings.LOGIN_URL))
