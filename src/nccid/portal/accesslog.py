"""gunicorn's access log without query strings.

A query string can hold what a user typed into a search box (the audit page's filter, the
admin's search), and people type NHS numbers there; the ``Referer`` header carries the
previous page's query string too. Each access log line keeps the usual combined format, with
the request line and the referrer cut to their paths.
"""

from __future__ import annotations

from gunicorn.glogging import Logger


class PathOnlyAccessLogger(Logger):
    """gunicorn's logger whose access log atoms hold no query string and no fragment."""

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        path = without_query(environ.get("RAW_URI", "") or environ.get("PATH_INFO", ""))
        atoms.update({
            "r": f"{environ.get('REQUEST_METHOD')} {path} {environ.get('SERVER_PROTOCOL')}",
            "q": "-", "{query_string}e": "-", "{raw_uri}e": path,
            "f": without_query(environ.get("HTTP_REFERER", "-")),
            "{referer}i": without_query(environ.get("HTTP_REFERER", "-")),
        })
        return atoms


def without_query(url: str) -> str:
    """``url`` up to its query string or fragment: ``/audit/?pseudonym=…`` -> ``/audit/``."""
    return url.split("?", 1)[0].split("#", 1)[0]
