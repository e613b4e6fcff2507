"""How the portal is reached: the Django settings that follow from ``public_url`` and
``trusted_proxies``, and the client's address as django-axes should count it.

Behind a reverse proxy every request comes from the proxy's address: counting sign-in
failures by that address would let anyone's five failures lock every user out.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

# Health checks and operators on the host itself reach the portal directly.
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def proxy_settings(public_url: str, trusted_proxies: int) -> dict:
    """Django settings for a portal reached at ``public_url`` through ``trusted_proxies`` proxies.

    Without a public URL (``make run``) any host is accepted and cookies work over plain http.
    """
    derived = {"NCCID_TRUSTED_PROXIES": trusted_proxies, "ALLOWED_HOSTS": ["*"],
               "CSRF_TRUSTED_ORIGINS": [], "SESSION_COOKIE_SECURE": False,
               "CSRF_COOKIE_SECURE": False}
    if not public_url:
        return derived
    parts = urlsplit(public_url)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    secure = parts.scheme == "https"
    derived.update(
        ALLOWED_HOSTS=[host, *LOOPBACK_HOSTS],
        CSRF_TRUSTED_ORIGINS=[public_url],
        SESSION_COOKIE_SECURE=secure,
        CSRF_COOKIE_SECURE=secure,
    )
    return derived


def client_address(request: HttpRequest) -> str | None:
    """The client's address: with N trusted proxies, the Nth entry of X-Forwarded-For from the
    right (each proxy appends the address it received from; entries further left are whatever
    the client sent, so never trusted). Without proxies, or without the header, the peer."""
    peer = request.META.get("REMOTE_ADDR")
    proxies = getattr(settings, "NCCID_TRUSTED_PROXIES", 0)
    if proxies <= 0:
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < proxies:
        return peer
    return hops[-proxies] if _is_address(hops[-proxies]) else peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
