"""The summary's "Your site" figures are the site's share of what the database holds (as the
national figures are): studies with images stored, patients its stored studies or clinical
records name. A study held for review or waiting for its patient to be linked has no stored
image yet and is not counted, so the figures are labelled as stored ones and point to My
uploads, which lists every study the site sent with its status; they once said "Studies your
site sent", and disagreed with My uploads (47 against 50) without saying why."""

from __future__ import annotations

import html as markup

import pytest
from django.urls import reverse
from django.utils import timezone

from nccid.portal import summary

from .figures_factories import add_clinical, add_images, pseudonym

pytestmark = pytest.mark.django_db


def _held_study(site, patient: str) -> None:
    from nccid.imaging.models import ReceiptStatus, StudyReceipt

    now = timezone.now()
    StudyReceipt.objects.create(site=site, study_uid="2.25.777", patient=patient, modality="DX",
                                source="dicom", instances=1, held=1, has_clinical=True,
                                first_received=now, last_received=now, status=ReceiptStatus.HELD)


def test_your_site_counts_stored_studies_and_says_so(client, site, make_user):
    for n in range(1, 4):
        add_clinical(site, pseudonym(n))
        add_images(site, pseudonym(n), str(n), "DX")
    _held_study(site, pseudonym(1))  # listed by My uploads, not stored
    summary.forget()
    client.force_login(make_user("uploader", site))
    page = markup.unescape(client.get(reverse("figures:summary")).content.decode())
    assert 'id="your-site-studies">3</td>' in page
    assert "Studies stored from your site" in page and "Studies your site sent" not in page
    assert "held for review" in page and f'href="{reverse("portal:my_uploads")}"' in page
    schema = client.get("/api/openapi.json").json()["components"]["schemas"]["SiteFiguresOut"]
    assert "studies with images stored" in schema["description"]
