"""The template download serves the current version of each kind, generated from the schema."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind,title", [
    ("positive", "Covid-19 Data (Positive) Template v1.5"),
    ("negative", "Covid-19 Status (Negative) Template v1.0"),
    ("isaric", "ISARIC-4C Core Data Template v1.0"),
])
def test_each_upload_page_links_its_current_template(client, site, make_user, kind, title):
    client.force_login(make_user("uploader", site))
    page = client.get(f"/upload/{kind}/").content.decode()
    assert title in page and f"/templates/{kind}.xlsx" in page
    response = client.get(f"/templates/{kind}.xlsx")
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"] and kind in response["Content-Disposition"]
    book = load_workbook(io.BytesIO(response.content), read_only=True)
    assert book.properties.title == title
    headers = [c.value for c in next(book.worksheets[0].iter_rows(max_row=1))]
    assert headers[0] == "NHS/CHI Number"


def test_unknown_template_kind_is_404(client, site, make_user):
    client.force_login(make_user("uploader", site))
    assert client.get("/templates/other.xlsx").status_code == 404
