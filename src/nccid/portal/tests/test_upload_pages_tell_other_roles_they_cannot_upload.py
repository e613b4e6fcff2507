"""The upload pages, opened by a role that may not upload (a researcher, a data manager), answer
the portal's 403 naming the role, as every other page those roles cannot use does; not a 404
saying the page does not exist. A kind of template there is none of is still a 404."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from nccid.clinical.models import Upload

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

ROLE_NAMES = {"researcher": "Researcher", "data-manager": "Data manager"}


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_a_role_that_may_not_upload_is_told_so(client, make_user, role):
    client.force_login(make_user(role))
    for kind in ("positive", "negative", "isaric"):
        shown = client.get(f"/upload/{kind}/")
        sent = client.post(f"/upload/{kind}/",
                           {"file": SimpleUploadedFile("sheet.csv", b"a,b\n1,2\n")})
        for answer in (shown, sent):
            body = answer.content.decode()
            assert answer.status_code == 403, (kind, answer.status_code)
            assert "<h1>You cannot see this page</h1>" in body
            assert f"({ROLE_NAMES[role]})" in body
    assert not Upload.objects.exists()


@pytest.mark.parametrize("role", ["researcher", "data-manager", "uploader"])
def test_a_kind_there_is_no_template_of_is_not_found_for_every_role(client, site, make_user,
                                                                    role):
    client.force_login(make_user(role, site=site if role == "uploader" else None))
    answer = client.get("/upload/no-such-kind/")
    assert answer.status_code == 404 and "<h1>Page not found</h1>" in answer.content.decode()
