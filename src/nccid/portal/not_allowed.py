"""A 405 (a method the view does not take) gets a portal page instead of a blank one.

Django's ``require_POST`` and the class-based views answer 405 with an empty body: in a
browser, a blank "HTTP ERROR 405" (a button's address opened as a link, or reached again
after signing in). Under /api/ it is JSON instead, as every API answer (ninja's own is the
text "Method not allowed"). Another 405 that has a body is left as it is, and so is the
answer to a HEAD (which has no body: gunicorn would log each one dropped)."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


class NotAllowedPageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if _api_not_allowed(request, response):
            allowed = response.get("Allow", "another method")
            response.content = json.dumps(
                {"detail": f"{request.method} is not allowed here: use {allowed}."})
            response["Content-Type"] = "application/json; charset=utf-8"
        elif _blank_not_allowed(request, response):
            response.content = render_to_string("405.html", request=request)
            response["Content-Type"] = "text/html; charset=utf-8"
        return response


API_ROOT = "/api/"


def _answerable(request: HttpRequest, response: HttpResponse) -> bool:
    return (response.status_code == 405 and request.method != "HEAD"
            and not getattr(response, "streaming", False))


def _blank_not_allowed(request: HttpRequest, response: HttpResponse) -> bool:
    return (_answerable(request, response) and not response.content
            and not request.path.startswith(API_ROOT))


def _api_not_allowed(request: HttpRequest, response: HttpResponse) -> bool:
    return (_answerable(request, response) and request.path.startswith(API_ROOT)
            and not response.get("Content-Type", "").startswith("application/json"))
