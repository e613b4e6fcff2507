"""Data managers' pages: the review queue of held images and the audited vault reveal."""

from __future__ import annotations

import io
import logging

import pytest
from django.urls import reverse
from PIL import Image

from nccid.accounts.models import ApiToken, AuditEvent
from nccid.identity.service import encrypt_for_vault, pseudonymise, store_in_vault
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def held(site, keyring):
    """Two images held at intake for suspected burned-in text (through the real pipeline)."""
    person = people(1, seed=4)[0]
    outcomes = []
    for n in (1, 2):
        ds = synthetic_instance(person, patient_id=person.nhs_number, instance=n)
        ds.BurnedInAnnotation = "YES"
        outcomes.append(ingest(to_bytes(ds), site, "test"))
    assert {o.status for o in outcomes} == {"held"}
    return list(HeldImage.objects.order_by("pk"))


def test_data_manager_releases_and_rejects_held_images_from_the_queue(client, make_user, held):
    manager = make_user("data-manager")
    client.force_login(manager)
    page = client.get(reverse("figures:review"))
    assert page.status_code == 200
    assert page.content.decode().count("Release<span") == 2
    release = reverse("figures:review_decide", args=[held[0].pk, "release"])
    reject = reverse("figures:review_decide", args=[held[1].pk, "reject"])
    assert client.post(release).status_code == 302
    assert client.post(reject).status_code == 302
    statuses = dict(HeldImage.objects.values_list("pk", "status"))
    assert statuses == {held[0].pk: "released", held[1].pk: "rejected"}
    again = client.post(release, follow=True)
    assert "already been decided" in again.content.decode()
    assert "No image is waiting for review" in client.get(reverse("figures:review")).content.decode()


def test_the_review_queue_comes_a_page_at_a_time_and_a_decision_keeps_the_page(
        client, make_user, held, monkeypatch):
    from nccid.portal import dashboard

    monkeypatch.setattr(dashboard, "REVIEW_PAGE_SIZE", 1)
    client.force_login(make_user("data-manager"))
    review = reverse("figures:review")
    first = client.get(review).content.decode()
    second = client.get(review + "?page=2").content.decode()
    image = [reverse("figures:review_image", args=[h.pk]) for h in held]
    assert image[0] in first and image[1] not in first
    assert image[1] in second and image[0] not in second
    assert "2 images held for review" in first and "1 to 1, oldest first" in first
    assert 'href="?page=2" aria-label="Page 2"' in first and 'rel="next"' in first
    assert 'rel="prev"' in second and 'aria-current="page">2<' in second
    decided = client.post(reverse("figures:review_decide", args=[held[1].pk, "reject"]),
                          {"page": "2"})
    assert decided["Location"] == review + "?page=2"
    after = client.get(decided["Location"]).content.decode()  # past the end: the last page
    assert image[0] in after and "nhsuk-pagination" not in after


def test_a_data_manager_sees_each_held_image_before_deciding_and_each_look_is_audited(
        client, make_user, held):
    manager = make_user("data-manager")
    client.force_login(manager)
    page = client.get(reverse("figures:review")).content.decode()
    sources = [reverse("figures:review_image", args=[h.pk]) for h in held]
    assert all(f'src="{source}"' in page for source in sources)

    shown = client.get(sources[0])
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert "no-store" in shown["Cache-Control"] and "private" in shown["Cache-Control"]
    image = Image.open(io.BytesIO(shown.content))
    assert max(image.size) <= 1024 and image.size[0] > 0
    looks = AuditEvent.objects.filter(action="imaging.held.view")
    assert list(looks.values_list("username", "detail__sop_uid")) == [
        (manager.username, held[0].sop_uid)]


def test_held_images_are_shown_to_data_managers_only_and_only_while_held(
        client, site, make_user, held):
    source = reverse("figures:review_image", args=[held[0].pk])
    assert client.get(source).status_code == 302  # to the login page
    for role in ("uploader", "researcher"):
        client.force_login(make_user(role, site=site if role == "uploader" else None))
        assert client.get(source).status_code == 403
    manager = make_user("data-manager")
    client.force_login(manager)
    client.post(reverse("figures:review_decide", args=[held[0].pk, "reject"]))
    assert client.get(source).status_code == 404
    assert client.get(reverse("figures:review_image", args=[999_999])).status_code == 404
    assert not AuditEvent.objects.filter(action="imaging.held.view").exists()


@pytest.mark.parametrize("source", ["JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEGLSNearLossless_16.dcm"])
def test_a_held_jpeg_lossless_or_jpeg_ls_image_is_previewed(client, site, keyring, make_user, source):
    """JPEG Lossless (the usual compression of chest X-rays) and JPEG-LS need a decoder
    Pillow is not (GDCM, a dependency): without it the data manager saw only a 415."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    sample = dcmread(get_testdata_file(source))
    person = people(1, seed=5)[0]
    ds = synthetic_instance(person, patient_id=person.nhs_number)
    ds.BurnedInAnnotation = "YES"
    ds.file_meta.TransferSyntaxUID = sample.file_meta.TransferSyntaxUID
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel",
                    "PixelRepresentation", "PhotometricInterpretation", "PixelData"):
        setattr(ds, keyword, sample.data_element(keyword).value)
    ds["PixelData"].VR = "OB"
    assert ingest(to_bytes(ds), site, "test").status == "held"
    client.force_login(make_user("data-manager"))
    shown = client.get(reverse("figures:review_image", args=[HeldImage.objects.get().pk]))
    assert shown.status_code == 200, shown.content[:300]
    picture = Image.open(io.BytesIO(shown.content))
    assert picture.format == "PNG" and max(picture.size) == max(sample.Rows, sample.Columns)


def test_a_held_image_nothing_here_can_decode_is_said_so_instead_of_a_broken_picture(
        client, site, keyring, make_user):
    """A JPEG-LS stream that does not decode: the image is stored as received (never
    transcoded), and its preview says why it cannot be shown."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    person = people(1, seed=5)[0]
    ds = synthetic_instance(person, patient_id=person.nhs_number)
    ds.BurnedInAnnotation = "YES"
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(60) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    assert ingest(to_bytes(ds), site, "test").status == "held"
    client.force_login(make_user("data-manager"))
    shown = client.get(reverse("figures:review_image", args=[HeldImage.objects.get().pk]))
    assert shown.status_code == 415
    assert "cannot be shown here" in shown.content.decode()


def test_the_home_page_tells_data_managers_what_waits_for_review(client, site, make_user, held):
    client.force_login(make_user("data-manager"))
    card = client.get(reverse("portal:home")).content.decode()
    assert "2 images held for review" in card and f'href="{reverse("figures:review")}"' in card
    client.force_login(make_user("uploader", site=site))
    home = client.get(reverse("portal:home")).content.decode()
    assert 'id="review-card"' not in home and 'id="research-card"' not in home


def test_the_home_page_shows_researchers_where_research_access_is(client, make_user):
    client.force_login(make_user("researcher"))
    home = client.get(reverse("portal:home")).content.decode()
    card = home.split('id="research-card"', 1)[1].split("</div>", 1)[0]
    assert 'href="/research/"' in card  # the page that says how, then the reference
    assert 'id="review-card"' not in home
    assert 'href="/api/docs"' in client.get("/research/").content.decode()
    assert client.get("/api/docs").status_code == 200


def test_review_queue_over_the_api_for_data_managers_only(client, site, make_user, held):
    manager, uploader = make_user("data-manager"), make_user("uploader", site=site)
    _, manager_token = ApiToken.issue(manager, "t")
    _, uploader_token = ApiToken.issue(uploader, "t")
    listed = client.get("/api/review/held", HTTP_AUTHORIZATION=f"Bearer {manager_token}")
    assert [h["id"] for h in listed.json()] == [h.pk for h in held]
    assert listed.json()[0]["site"] == site.code
    denied = client.post(f"/api/review/held/{held[0].pk}/release",
                         HTTP_AUTHORIZATION=f"Bearer {uploader_token}")
    assert denied.status_code == 403 and "data managers" in denied.json()["detail"]
    image = f"/api/review/held/{held[0].pk}/image.png"
    shown = client.get(image, HTTP_AUTHORIZATION=f"Bearer {manager_token}")
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert "no-store" in shown["Cache-Control"]
    assert Image.open(io.BytesIO(shown.content)).format == "PNG"
    assert client.get(image, HTTP_AUTHORIZATION=f"Bearer {uploader_token}").status_code == 403
    done = client.post(f"/api/review/held/{held[0].pk}/reject",
                       HTTP_AUTHORIZATION=f"Bearer {manager_token}")
    assert done.json() == {"id": held[0].pk, "status": "rejected"}
    twice = client.post(f"/api/review/held/{held[0].pk}/release",
                        HTTP_AUTHORIZATION=f"Bearer {manager_token}")
    assert twice.status_code == 409
    assert HeldImage.objects.get(pk=held[0].pk).status == "rejected"
    gone = client.get(image, HTTP_AUTHORIZATION=f"Bearer {manager_token}")
    assert gone.status_code == 404 and "already been decided" in gone.json()["detail"]


@pytest.fixture
def in_vault(keyring):
    person = people(1, seed=5)[0]
    pseudonym, digits = pseudonymise(person.nhs_number)
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, digits)})
    return pseudonym, digits


def test_vault_reveal_shows_the_number_once_and_audits_the_reason(client, make_user, in_vault, caplog):
    pseudonym, digits = in_vault
    manager = make_user("data-manager")
    client.force_login(manager)
    with caplog.at_level(logging.DEBUG):
        shown = client.post(reverse("figures:vault"),
                            {"pseudonym": pseudonym.lower(), "reason": "site query 42"})
    assert shown.status_code == 200 and digits in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    assert digits not in caplog.text
    event = AuditEvent.objects.get(action="vault.reveal")
    assert (event.username, event.pseudonym, event.reason) == (manager.username, pseudonym, "site query 42")
    assert digits not in str(event.detail)
    # Nothing kept for a later page: the form is empty again.
    assert digits not in client.get(reverse("figures:vault")).content.decode()


def test_vault_reveal_needs_a_reason_and_a_known_pseudonym(client, make_user, in_vault):
    pseudonym, digits = in_vault
    client.force_login(make_user("data-manager"))
    no_reason = client.post(reverse("figures:vault"), {"pseudonym": pseudonym, "reason": "  "})
    assert no_reason.status_code == 400 and "Enter the reason" in no_reason.content.decode()
    assert digits not in no_reason.content.decode()
    unknown = client.post(reverse("figures:vault"),
                          {"pseudonym": "NCCID-AAAAAAAAAAAAAAAA", "reason": "check"})
    assert unknown.status_code == 400 and "No vault entry" in unknown.content.decode()
    assert not AuditEvent.objects.filter(action="vault.reveal").exists()


def _never_shown(number: str, page) -> None:
    body = page.content.decode()
    assert number not in body and number.replace(" ", "") not in body


def test_an_nhs_number_typed_as_the_pseudonym_is_not_shown_back(client, make_user, in_vault):
    typed = people(1, seed=6)[0].nhs_number
    client.force_login(make_user("data-manager"))
    page = client.post(reverse("figures:vault"), {"pseudonym": typed, "reason": "site query 7"})
    assert page.status_code == 400 and "Enter a pseudonym" in page.content.decode()
    _never_shown(typed, page)
    assert "site query 7" in page.content.decode()  # a harmless reason is kept


def test_a_reason_holding_an_nhs_number_is_not_shown_back_beside_a_wrong_pseudonym(
        client, make_user, in_vault):
    typed = people(1, seed=6)[0].nhs_number
    client.force_login(make_user("data-manager"))
    page = client.post(reverse("figures:vault"),
                       {"pseudonym": "NCCID-BADPSEUDONYM", "reason": f"asked about {typed}"})
    assert page.status_code == 400
    _never_shown(typed, page)


def test_a_reason_holding_an_nhs_number_is_a_form_error_not_a_refusal(client, make_user, in_vault):
    pseudonym, digits = in_vault
    typed = people(1, seed=6)[0].nhs_number
    client.force_login(make_user("data-manager"))
    page = client.post(reverse("figures:vault"), {"pseudonym": pseudonym, "reason": f"re {typed}"})
    body = page.content.decode()
    assert page.status_code == 400
    assert 'id="reason-error"' in body and "must not contain an NHS/CHI number" in body
    assert pseudonym in body  # a well-formed pseudonym is kept for the second try
    _never_shown(typed, page)
    _never_shown(digits, page)
    denied = AuditEvent.objects.get(action="vault.reveal.denied")
    assert typed.replace(" ", "") not in str(denied.detail) + denied.reason
    assert not AuditEvent.objects.filter(action="vault.reveal").exists()


@pytest.mark.parametrize("role", ["uploader", "researcher"])
def test_other_roles_cannot_reveal(client, site, make_user, in_vault, role):
    pseudonym, digits = in_vault
    client.force_login(make_user(role, site=site if role == "uploader" else None))
    response = client.post(reverse("figures:vault"), {"pseudonym": pseudonym, "reason": "curious"})
    assert response.status_code == 403 and digits not in response.content.decode()
    assert not AuditEvent.objects.filter(action="vault.reveal").exists()
