"""Response headers that make the browser hold the portal to what it promises: every page
loads and runs only what the portal itself serves (no CDN, no inline script), and asks for no
device features. Pages that break the policy fail in the browser tests, not silently."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",  # Swagger UI's and the NHS.UK frontend's icons are data: URLs
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    """Adds ``Content-Security-Policy`` and ``Permissions-Policy`` (settings
    ``NCCID_CONTENT_SECURITY_POLICY`` and ``NCCID_PERMISSIONS_POLICY``; empty turns one off)
    to every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.headers = [
            ("Content-Security-Policy",
             getattr(settings, "NCCID_CONTENT_SECURITY_POLICY", CONTENT_SECURITY_POLICY)),
            ("Permissions-Policy", getattr(settings, "NCCID_PERMISSIONS_POLICY", PERMISSIONS_POLICY)),
        ]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        for header, value in self.headers:
            if value and header not in response.headers:
                response.headers[header] = value
        return response
