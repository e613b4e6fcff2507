"""A data manager looks at an upload waiting for confirmation but cannot confirm or cancel it:
the pages say it waits for the site (not "Check your upload", "Waiting for you to confirm"),
and a press of Confirm or Cancel (a form kept from before, a script) gets a 403 page giving the
reason the API gives, not the generic "ask the NCCID data management team"."""

from __future__ import annotations

import pytest

from nccid.clinical.models import Upload

from .test_upload_pages import sheet, upload

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

REASON = "Data managers look at uploads; the site's uploader confirms or cancels them."


@pytest.fixture
def waiting(client, site, make_user, tmp_path) -> str:
    """The check page of an upload waiting for its site's confirmation."""
    client.force_login(make_user("uploader", site))
    file, _ = sheet(tmp_path)
    return upload(client, "positive", file)["Location"]


def test_the_uploader_is_asked_to_check_and_confirm(client, waiting):
    page = client.get(waiting).content.decode()
    assert "<title>Check your upload" in page and "<h1>Check your upload</h1>" in page
    assert "Waiting for you to confirm" in page and "Confirm and import" in page


def test_a_data_manager_is_told_the_upload_waits_for_the_site(client, site, make_user, waiting):
    client.force_login(make_user("data-manager"))
    page = client.get(waiting).content.decode()
    my_uploads = client.get(f"/uploads/?site={site.code}").content.decode()

    assert "<h1>Upload waiting for the site to confirm</h1>" in page
    assert "Check your upload" not in page and "Confirm and import" not in page
    assert "The site's uploader confirms or cancels it" in page
    for shown in (page, my_uploads):
        assert "Waiting for the site to confirm" in shown
        assert "Waiting for you to confirm" not in shown


@pytest.mark.parametrize("action", ["confirm", "cancel"])
def test_a_data_managers_press_is_refused_with_the_reason(client, make_user, waiting, action):
    client.force_login(make_user("data-manager"))
    answer = client.post(f"{waiting}{action}/")
    page = answer.content.decode()

    assert answer.status_code == 403
    assert "<h1>You cannot do this</h1>" in page
    assert REASON.replace("'", "&#x27;") in page
    assert "ask the NCCID data management team" not in page
    assert Upload.objects.get().status == "preview"


def test_a_refusal_without_a_reason_for_the_user_keeps_the_generic_page(client, make_user):
    client.force_login(make_user("researcher"))
    page = client.get("/uploads/").content.decode()  # its reason is for the log
    assert "<h1>You cannot see this page</h1>" in page
    assert "ask the NCCID data management team" in page
    assert "site uploads are for" not in page


def test_an_admin_may_act_but_is_not_told_the_upload_is_theirs(client, site, make_user, waiting):
    client.force_login(make_user("admin"))
    page = client.get(waiting).content.decode()
    my_uploads = client.get(f"/uploads/?site={site.code}").content.decode()

    assert "<h1>Upload waiting for the site to confirm</h1>" in page and "Confirm and import" in page
    for shown in (page, my_uploads):
        assert "Waiting for the site to confirm" in shown
        assert "Waiting for you to confirm" not in shown


def test_the_title_follows_the_heading_with_error_when_the_summary_shows(client, site, make_user,
                                                                         tmp_path):
    client.force_login(make_user("uploader", site))
    with_errors = upload(client, "positive", sheet(tmp_path, errors=2)[0])["Location"]
    cancelled = upload(client, "positive", sheet(tmp_path, name="other.xlsx")[0])["Location"]
    client.post(f"{cancelled}cancel/")
    assert "<title>Error: Check your upload" in client.get(with_errors).content.decode()
    assert "<title>Upload cancelled" in client.get(cancelled).content.decode()

    client.force_login(make_user("data-manager"))
    page = client.get(with_errors).content.decode()
    assert "<title>Error: Upload waiting for the site to confirm" in page
