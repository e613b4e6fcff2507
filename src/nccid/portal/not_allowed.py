"""A 405 (a method the view does not take) gets a portal page instead of a blank one.

Django's ``require_POST`` and the class-based views answer 405 with an empty body: in a
browser, a blank "HTTP ERROR 405" (a button's address opened as a link, or reached again
after signing in). The API keeps its own answers; a 405 that has a body is left as it is,
and so is the answer to a HEAD (which has no body: gunicorn would log each one dropped)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


class NotAllowedPageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if _blank_not_allowed(request, response):
            response.content = render_to_string("405.html", request=request)
            response["Content-Type"] = "text/html; charset=utf-8"
        return response


def _blank_not_allowed(request: HttpRequest, response: HttpResponse) -> bool:
    return (response.status_code == 405 and request.method != "HEAD"
            and not getattr(response, "streaming", False)
            and not response.content and not request.path.startswith("/api/"))
