"""The FAQ's "A patient's details have changed" says what a new upload does (README, step 2):
it changes only the columns the sheet has, keeps every other stored value, and a blank cell in
one of its columns clears that value. It said the new upload replaced the record, so a site
sending a follow-up sheet of a few columns feared losing the rest."""

from __future__ import annotations

import html
import re

import pytest

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_the_faq_says_a_new_upload_changes_only_the_columns_the_sheet_has(client, site,
                                                                           make_user):
    client.force_login(make_user("uploader", site))
    page = " ".join(html.unescape(client.get("/faq/").content.decode()).split())
    answer = re.search(r"A patient's details have changed.*?</details>", page).group(0)
    assert "replaces" not in answer
    assert ("A new upload changes only the columns the sheet has, and keeps every other stored "
            "value; a blank cell in one of its columns clears that value") in answer
