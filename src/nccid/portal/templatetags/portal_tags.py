"""Small template helpers of the portal."""

from datetime import datetime

from django import template
from django.utils.dateparse import parse_datetime

from nccid.portal import session_ended

register = template.Library()


@register.simple_tag
def session_end(request) -> session_ended.SessionEnd | None:
    """When the signed-in user's session ends (the header says so); None signed out."""
    return session_ended.session_end(request)


@register.filter
def iso_datetime(value) -> datetime | None:
    """``text|iso_datetime|date:"j M Y"``: an ISO 8601 time kept as text (the dashboard's
    saved figures are JSON) as a datetime, so the portal shows it as it shows every other."""
    if isinstance(value, datetime):
        return value
    try:
        return parse_datetime(value) if value else None
    except ValueError:
        return None


@register.filter
def uploads_title(user) -> str:
    """The uploads page's name for ``user``: site staff see their own site's ("My uploads"),
    data managers and administrators choose any site's ("Uploads by site")."""
    from nccid.portal.auth import sees_all_sites

    return "Uploads by site" if sees_all_sites(user) else "My uploads"


@register.filter
def get_item(mapping: dict, key):
    """``mapping|get_item:key``: a dict value by a variable key."""
    return mapping.get(key, []) if mapping else []


@register.filter
def detail_text(detail: dict) -> str:
    """An audit event's detail as ``name=value; …`` (lists and mappings as compact JSON)."""
    import json

    def shown(value) -> str:
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
        return str(value)

    return "; ".join(f"{name}={shown(value)}" for name, value in (detail or {}).items())


ERROR_PREFIX = "Error: "


@register.filter
def error_messages(messages) -> list:
    """The error-level ones of the request's messages (shown together in an error summary)."""
    return [message for message in messages or () if message.level_tag == "error"]


@register.filter(is_safe=True)
def error_title(title: str, messages) -> str:
    """``{% filter error_title:messages %}``: the page title, after "Error: " when an error
    message is shown (a screen reader announces the title first). A page whose form already
    put "Error: " in its title keeps one."""
    if title.startswith(ERROR_PREFIX) or not error_messages(messages):
        return title
    return ERROR_PREFIX + title
