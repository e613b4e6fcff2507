"""Small template helpers of the portal."""

from django import template

register = template.Library()


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
