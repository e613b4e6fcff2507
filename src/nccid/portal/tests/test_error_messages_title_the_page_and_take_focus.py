"""An error told after a redirect (a Django message: confirming an upload cancelled in another
tab, deciding an image already decided) is an error like a form's: the page title starts
"Error: " (what a screen reader announces first), once, and the error summary is one the
NHS.UK script moves the focus to."""

from __future__ import annotations

import re

import pytest
from conftest import TEST_PASSWORD
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def title(body: str) -> str:
    return re.search(r"<title>(.*?)</title>", body, re.S).group(1).strip()


def summaries(body: str) -> list[str]:
    return re.findall(r'<div class="nhsuk-error-summary"[^>]*>', body)


def assert_an_error_page(body: str, name: str) -> None:
    assert title(body).startswith(f"Error: {name}")
    assert title(body).count("Error:") == 1
    summary, = summaries(body)
    assert 'data-module="nhsuk-error-summary"' in summary and 'tabindex="-1"' in summary


def test_confirming_an_upload_cancelled_meanwhile_is_an_error_page(client, site, make_user,
                                                                   tmp_path):
    client.force_login(make_user("uploader", site))
    path = tmp_path / "positive.xlsx"
    write_sheet("positive", people(2, seed=46), path, errors=0, seed=2)
    check = client.post("/upload/positive/",
                        {"file": SimpleUploadedFile(path.name, path.read_bytes())})["Location"]
    assert not title(client.get(check).content.decode()).startswith("Error:")
    client.post(check + "cancel/")  # in another tab
    confirmed = client.post(check + "confirm/", follow=True).content.decode()
    assert "cannot be confirmed" in confirmed
    assert_an_error_page(confirmed, "Upload cancelled")


def test_deciding_an_image_already_decided_is_an_error_page(client, site, keyring, make_user):
    person = people(1, seed=47)[0]
    ds = synthetic_instance(person, patient_id=person.nhs_number, instance=1)
    ds.BurnedInAnnotation = "YES"
    assert ingest(to_bytes(ds), site, "test").status == "held"
    held = HeldImage.objects.get()
    client.force_login(make_user("data-manager"))
    queue = client.get(reverse("figures:review")).content.decode()
    assert title(queue).startswith("Review queue") and not summaries(queue)
    reject = reverse("figures:review_decide", args=[held.pk, "reject"])
    client.post(reject)  # another data manager's press
    again = client.post(reject, follow=True).content.decode()
    assert "already been decided" in again
    assert_an_error_page(again, "Review queue")


def test_a_message_that_is_not_an_error_leaves_the_title_alone(client, site, make_user):
    user = make_user("uploader", site)
    client.force_login(user)
    changed = client.post("/password/", {"old_password": TEST_PASSWORD,
                                         "new_password1": "Copper-Meadow-Falcon-31",
                                         "new_password2": "Copper-Meadow-Falcon-31"}, follow=True)
    body = changed.content.decode()
    assert "Your password has been changed." in body
    assert title(body).startswith("Home") and not summaries(body)
