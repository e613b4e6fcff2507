"""A warehouse that cannot be read (an unmounted folder, an object store that is down) is an
outage, not a bug: the portal answers 503 with a page saying so and that nothing sent is lost,
instead of its generic error page (the API: JSON ``{"detail": ...}``). The reason goes to the log, never to the page (it can name
a host or a path)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

log = logging.getLogger("nccid.web")

RETRY_AFTER_SECONDS = "300"
API_MESSAGE = "The image warehouse cannot be reached; try again later."


def warehouse_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the warehouse's store could not be reached or read."""
    from nccid.warehouse.storage import StorageError

    kinds: list[type[BaseException]] = [StorageError]
    try:  # the object store's own errors, should one escape the warehouse layer
        from botocore.exceptions import BotoCoreError

        kinds.append(BotoCoreError)
    except ImportError:
        pass
    return tuple(kinds)


class WarehouseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, warehouse_errors()):
            return None
        log.error("warehouse unavailable serving %s %s: %s: %s", request.method,
                  request.path, type(exc).__name__, exc)
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": API_MESSAGE}, status=503)
        else:
            response = render(request, "503_warehouse.html", status=503)
        response["Retry-After"] = RETRY_AFTER_SECONDS
        return response
