"""Long lists a page at a time, with the NHS.UK numbered pagination (``_pagination.html``).

A page's other query parameters (the site a data manager chose, a status filter, another
list's page) are kept in every page link, so two paged lists can share one page."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.http import HttpRequest


@dataclass(frozen=True)
class Pages:
    page: Page
    items: list
    total: int
    page_range: list
    param: str   # the query parameter holding the page number
    prefix: str  # the other query parameters, ready to precede ``param``
    label: str   # what the pagination's landmark is called, e.g. "Pages of held images"


def paginate(request: HttpRequest, items, per_page: int, *, param: str = "page",
             label: str = "Pages") -> Pages:
    """The page of ``items`` (a queryset or list) that ``request`` asks for in ``param``; a
    missing, malformed or too-large number gets the first or last page, never an error."""
    paginator = Paginator(items, per_page)
    page = paginator.get_page(request.GET.get(param))
    prefix = query_prefix(request, param)
    page_range = list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1))
    return Pages(page, list(page.object_list), paginator.count, page_range, param, prefix, label)


def query_prefix(request: HttpRequest, *dropped: str) -> str:
    """The request's query parameters but ``dropped``, ready to precede another: "a=1&" or ""."""
    kept = request.GET.copy()
    for name in dropped:
        kept.pop(name, None)
    return kept.urlencode() + "&" if kept else ""
