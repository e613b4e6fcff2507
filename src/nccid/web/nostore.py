"""No signed-in answer stays in the browser's cache: a shared workstation's disk cache kept My
uploads (a site's pseudonyms), upload checks and API answers after signing out, for the next
person at the desk to open. One rule for every view, so a page added later cannot forget it.

Static files never reach this middleware (WhiteNoise answers them first) and keep their
caching; so do anonymous pages outside the API."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from nccid.portal.not_allowed import API_ROOT


class NoStoreWhenSignedInMiddleware:
    """``Cache-Control: private, no-store`` (Django's never-cache headers) on every answer to a
    signed-in user, by session or by API token (whose view sets the user), and on every API
    answer. One that says ``no-store`` already is left as its view made it, the user not asked
    for: /session/left/ must not load the session (an ended one would lose its cookie)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "no-store" in response.get("Cache-Control", ""):
            return response
        if request.path.startswith(API_ROOT) or request.user.is_authenticated:
            add_never_cache_headers(response)
        return response
