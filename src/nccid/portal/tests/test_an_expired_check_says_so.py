"""A check left unconfirmed past check_retention_days is cancelled by the upkeep: the check
page says by when to confirm, and afterwards My uploads, the upload's page, a late Confirm
and the API say it expired (not just "cancelled")."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from nccid.accounts.models import ApiToken
from nccid.clinical.models import ClinicalRecord, Upload
from nccid.clinical.services import expire_checks
from nccid.config import get_settings
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
EXPIRED = "expired unconfirmed after 14 days"


@pytest.fixture
def uploader(client, site, make_user):
    user = make_user("uploader", site)
    client.force_login(user)
    return user


def _checked(client, tmp_path) -> str:
    path = tmp_path / "positive.xlsx"
    write_sheet("positive", people(3, seed=4), path, seed=4)
    response = client.post("/upload/positive/", {"file": SimpleUploadedFile(path.name, path.read_bytes())})
    assert response.status_code == 302
    return response["Location"]


def _age_and_expire(days: int) -> Upload:
    Upload.objects.update(created=timezone.now() - timedelta(days=days))
    assert len(expire_checks()) == 1
    return Upload.objects.get()


def test_the_check_page_says_by_when_to_confirm(client, uploader, tmp_path):
    page = client.get(_checked(client, tmp_path)).content.decode()
    expires = Upload.objects.get().created + timedelta(days=get_settings().check_retention_days)
    assert f"Confirm or cancel it by {timezone.localtime(expires):%-d %b %Y %H:%M}" in page


def test_a_late_confirmation_on_the_portal_says_the_check_expired(client, uploader, tmp_path):
    check_url = _checked(client, tmp_path)
    _age_and_expire(get_settings().check_retention_days + 1)

    after = client.post(check_url + "confirm/", follow=True).content.decode()

    assert f"This upload {EXPIRED}" in after and "upload the file again" in after
    assert ClinicalRecord.objects.count() == 0
    assert EXPIRED.capitalize() in client.get("/uploads/").content.decode()


def test_a_late_confirmation_through_the_api_is_a_conflict_saying_it_expired(client, site, make_user,
                                                                             uploader, tmp_path):
    _checked(client, tmp_path)
    upload = _age_and_expire(get_settings().check_retention_days + 1)
    _, token = ApiToken.issue(make_user("uploader", site=site), "automation")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    answer = client.post(f"/api/uploads/{upload.pk}/confirm", **headers)

    assert answer.status_code == 409 and EXPIRED in answer.json()["detail"]
    shown = client.get(f"/api/uploads/{upload.pk}", **headers).json()
    assert shown["status"] == "cancelled" and EXPIRED in shown["message"] and shown["accepted"] == 3
