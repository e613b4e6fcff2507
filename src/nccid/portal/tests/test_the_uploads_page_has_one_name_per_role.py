"""The uploads page has one name for each role, on the home card, in the menu and as its
title: "My uploads" for a site's staff, "Uploads by site" for data managers and administrators
(who choose the site; their card said "Uploads by site", the page "My uploads"). Its images
section says how studies arrive (the node from the PACS, or ``nccid images import``), of
"your" site for site staff and of "this" site for the others."""

from __future__ import annotations

import html
import re

import pytest

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _text(response) -> str:
    return " ".join(html.unescape(response.content.decode()).split())


@pytest.mark.parametrize(("role", "name", "whose", "pacs"), [
    ("uploader", "My uploads", "your site", "from your PACS"),
    ("data-manager", "Uploads by site", "this site", "from its PACS"),
    ("admin", "Uploads by site", "this site", "from its PACS"),
])
def test_the_uploads_page_is_named_alike_everywhere(client, site, make_user, role, name, whose,
                                                    pacs):
    client.force_login(make_user(role, site if role == "uploader" else None))
    home = _text(client.get("/"))
    cards = home.split('nhsuk-card-group">', 1)[1]
    assert name in cards
    menu = home.split('aria-label="Menu"', 1)[1].split("</nav>", 1)[0]
    assert f">{name}</a>" in menu

    page = _text(client.get("/uploads/" + ("" if role == "uploader" else f"?site={site.code}")))
    assert f"<title>{name} –" in page and re.search(f"<h1>{name} <span", page)
    assert f"DICOM studies of {whose}: sent to the node" in page
    assert pacs in page and "or imported from folders, discs and zip files (nccid images import)" \
        in re.sub(r"</?code>", "", page)
    others = {"My uploads", "Uploads by site"} - {name}
    assert not [other for other in others if other in home + page]
