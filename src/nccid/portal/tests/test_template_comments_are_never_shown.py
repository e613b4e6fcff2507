"""Django's ``{# #}`` comment ends on its own line: one spanning two lines is shown on the page
as text (the session-timeout note was shown at the foot of every signed-in page)."""

from __future__ import annotations

import re
from pathlib import Path

import nccid

TEMPLATES = sorted(Path(nccid.__file__).parent.rglob("templates/**/*.html"))
UNCLOSED = re.compile(r"\{#(?:(?!#\}).)*$", re.MULTILINE)


def test_there_are_templates_to_check():
    assert any(t.name == "base.html" for t in TEMPLATES)


def test_no_template_has_a_one_line_comment_spanning_lines():
    unclosed = [f"{t.relative_to(Path(nccid.__file__).parent)}:{t.read_text()[:m.start()].count(chr(10)) + 1}"
                for t in TEMPLATES for m in UNCLOSED.finditer(t.read_text())]
    assert unclosed == []


def test_a_signed_in_page_shows_no_template_comment(client, site, make_user):
    client.force_login(make_user("uploader", site))
    page = client.get("/").content.decode()
    assert "{#" not in page and "#}" not in page and "{% comment" not in page
