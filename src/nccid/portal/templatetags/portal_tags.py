"""Small template helpers of the portal."""

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict, key):
    """``mapping|get_item:key``: a dict value by a variable key."""
    return mapping.get(key, []) if mapping else []
