"""A button pressed after the session ended (Confirm, Cancel, Release, Reject): signing in leads
back to the page the button was on, never to the action's own address (which the browser
would then GET: a blank "HTTP ERROR 405"), and nothing is done by the replayed request. A 405
anywhere on the portal is a portal page, and GET /logout/ asks before signing out."""

from __future__ import annotations

import pytest
from conftest import TEST_PASSWORD
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from nccid.clinical.models import Upload
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def preview(client, site, make_user, tmp_path) -> Upload:
    """An upload waiting on its check page, sent by a signed-in uploader who then signs out."""
    user = make_user("uploader", site)
    client.force_login(user)
    path = tmp_path / "positive.xlsx"
    write_sheet("positive", people(2, seed=41), path, errors=0, seed=2)
    sent = client.post("/upload/positive/", {"file": SimpleUploadedFile(path.name, path.read_bytes())})
    assert sent.status_code == 302
    client.logout()  # the session ended while the check page was open
    found = Upload.objects.get()
    assert found.status == "preview"
    return found


def sign_in_and_follow(client: Client, login_url: str, username: str):
    """Sign in on the login page a signed-out press led to; follow where it leads."""
    return client.post(login_url, {"username": username, "password": TEST_PASSWORD}, follow=True)


@pytest.mark.parametrize("action", ["confirm", "cancel"])
def test_a_signed_out_confirm_or_cancel_signs_in_back_to_the_check_page(client, preview, action):
    pressed = client.post(f"/uploads/{preview.pk}/{action}/")
    assert pressed.status_code == 302
    assert pressed["Location"] == f"/login/?next=/uploads/{preview.pk}/"
    landed = sign_in_and_follow(client, pressed["Location"], preview.uploaded_by.username)
    assert landed.status_code == 200
    assert landed.redirect_chain[-1][0] == f"/uploads/{preview.pk}/"
    assert "Check your upload" in landed.content.decode()
    preview.refresh_from_db()
    assert preview.status == "preview"  # nothing confirmed or cancelled by the replay


@pytest.fixture
def held(site, keyring) -> HeldImage:
    person = people(1, seed=42)[0]
    ds = synthetic_instance(person, patient_id=person.nhs_number, instance=1)
    ds.BurnedInAnnotation = "YES"
    assert ingest(to_bytes(ds), site, "test").status == "held"
    return HeldImage.objects.get()


@pytest.mark.parametrize("action", ["release", "reject"])
def test_a_signed_out_review_decision_signs_in_back_to_the_review_queue(client, make_user, held,
                                                                         action):
    manager = make_user("data-manager")
    pressed = client.post(f"/review/{held.pk}/{action}/", {"page": "2"})
    assert pressed.status_code == 302
    assert pressed["Location"] == "/login/?next=/review/%3Fpage%3D2"
    landed = sign_in_and_follow(client, pressed["Location"], manager.username)
    assert landed.status_code == 200 and landed.redirect_chain[-1][0] == "/review/?page=2"
    assert HeldImage.objects.filter(pk=held.pk, file_name__gt="").exists()  # still held


def test_a_page_used_the_wrong_way_is_a_portal_page_not_a_blank_405(client, site, make_user):
    client.force_login(make_user("uploader", site))
    for url in ("/uploads/1/confirm/", "/uploads/1/cancel/"):
        answer = client.get(url)
        body = answer.content.decode()
        assert answer.status_code == 405 and answer["Allow"] == "POST"
        assert "<title>This page cannot be used that way" in body
        assert "nothing was changed" in body and 'href="/"' in body
    posted = client.post("/summary/")
    assert posted.status_code == 405 and "This page cannot be used that way" in posted.content.decode()


def test_a_head_request_gets_no_page_and_logout_answers_it_as_its_get(client, rf, site,
                                                                      make_user):
    from django.http import HttpResponseNotAllowed

    from nccid.portal.not_allowed import _blank_not_allowed

    # A body on a HEAD: gunicorn drops it and logs each one (the test client strips it).
    assert not _blank_not_allowed(rf.head("/uploads/1/confirm/"), HttpResponseNotAllowed(["POST"]))
    assert _blank_not_allowed(rf.get("/uploads/1/confirm/"), HttpResponseNotAllowed(["POST"]))
    client.force_login(make_user("uploader", site))
    assert client.head("/logout/").status_code == 200


def test_the_api_keeps_its_own_405(client, site, make_user):
    client.force_login(make_user("uploader", site))
    answer = client.put("/api/me")
    assert answer.status_code == 405
    assert "This page cannot be used that way" not in answer.content.decode()
