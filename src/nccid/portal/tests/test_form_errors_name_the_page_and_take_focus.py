"""The vault, withdraw and remove-study forms sent back with errors do what the upload form
does: the page title starts "Error: " (what a screen reader announces first) and the error
summary is one the NHS.UK script moves the focus to."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

FORMS = [("/vault/", {"pseudonym": "", "reason": ""}, "Reveal an NHS/CHI number"),
         ("/withdraw/", {"patient": ""}, "Withdraw a patient"),
         ("/remove-study/", {"study": "1.2.3.4"}, "Remove a study")]


def title(body: str) -> str:
    return re.search(r"<title>(.*?)</title>", body, re.S).group(1)


@pytest.mark.parametrize(("url", "sent", "name"), FORMS)
def test_a_form_sent_back_with_errors_says_so_in_the_title_and_focuses_its_summary(
        client, make_user, url, sent, name):
    client.force_login(make_user("data-manager"))
    first = client.get(url).content.decode()
    assert title(first).startswith(name)
    refused = client.post(url, sent)
    body = refused.content.decode()
    assert refused.status_code == 400
    assert title(body).startswith(f"Error: {name}")
    summary = re.search(r'<div class="nhsuk-error-summary"[^>]*>', body).group()
    assert 'data-module="nhsuk-error-summary"' in summary and 'tabindex="-1"' in summary
