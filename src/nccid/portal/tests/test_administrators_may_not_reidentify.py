"""One account must not both query and re-identify: an administrator, who may query research
data, is refused what turns an identifier into a pseudonym or shows identifying content, as the
vault refuses them. An administrator finding a patient by NHS number on /withdraw/ was shown
the pseudonym, then found that patient's rows with their research token. Refused with the
reason, audited, and not offered; the data manager keeps every one of these pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.accounts.models import ADMINS_MAY_NOT_REIDENTIFY, ApiToken, AuditEvent
from nccid.imaging.intake import ingest, ingest_many
from nccid.imaging.models import HeldImage, HeldStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.models import ImageRecord

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def held_patient(site, keyring, local_warehouse):
    """A patient with a stored study, and an image of theirs held for burned-in text."""
    person = people(1, seed=41)[0]
    stored = ingest_many([to_bytes(synthetic_instance(person, patient_id=person.nhs_number,
                                                      instance=1))], site, "test")
    assert stored[0].status == "stored"
    shown = synthetic_instance(person, patient_id=person.nhs_number, instance=2)
    shown.BurnedInAnnotation = "YES"
    held = HeldImage.objects.get(sop_uid=ingest(to_bytes(shown), site, "test").sop_uid)
    return person, keyring.pseudonym(person.nhs_number), held


def _pages(person, pseudonym, held) -> list[tuple[str, str, dict]]:
    """(method, address, form) of every page that re-identifies."""
    study = ImageRecord.objects.filter(pseudonym=pseudonym).values_list("study_uid", flat=True)[0]
    return [("post", reverse("figures:withdraw"), {"patient": person.nhs_number}),
            ("get", reverse("figures:withdraw"), {}),
            ("post", reverse("figures:remove_study"), {"study": study}),
            ("get", reverse("figures:review"), {}),
            ("get", reverse("figures:review_image", args=[held.pk]), {}),
            ("get", reverse("figures:review_decide", args=[held.pk, "release"]), {}),
            ("post", reverse("figures:review_decide", args=[held.pk, "reject"]), {}),
            ("get", reverse("figures:vault"), {})]


def test_an_administrator_is_refused_every_page_that_re_identifies(client, make_user, held_patient):
    person, pseudonym, held = held_patient
    client.force_login(make_user("admin"))
    for method, address, form in _pages(person, pseudonym, held):
        answer = getattr(client, method)(address, form)
        body = answer.content.decode()
        assert answer.status_code == 403, (method, address)
        assert ADMINS_MAY_NOT_REIDENTIFY in body, address  # told why
        assert pseudonym not in body and person.nhs_number not in body, address
    assert HeldImage.objects.get(pk=held.pk).status == HeldStatus.HELD  # nothing decided
    assert not AuditEvent.objects.filter(action__in=("patient.look-up", "study.look-up",
                                                     "imaging.held.view")).exists()
    refusals = AuditEvent.objects.filter(action__endswith=".denied")
    assert {e.action for e in refusals} >= {"patient.look-up.denied", "study.look-up.denied",
                                            "imaging.held.list.denied", "imaging.held.view.denied",
                                            "imaging.held.decide.denied"}
    # the refusal names no pseudonym: one worked out from the number typed would tell it
    assert not refusals.exclude(pseudonym="").exists()
    assert {e.detail["cause"] for e in refusals} == {ADMINS_MAY_NOT_REIDENTIFY}


def test_a_data_manager_keeps_every_page_that_re_identifies(client, make_user, held_patient):
    person, pseudonym, held = held_patient
    client.force_login(make_user("data-manager"))
    for method, address, form in _pages(person, pseudonym, held):
        if address.endswith("/reject/"):
            continue  # deciding is checked by the review tests; the image is looked at here
        answer = getattr(client, method)(address, form)
        assert answer.status_code == 200, (method, address)
    found = client.post(reverse("figures:withdraw"), {"patient": person.nhs_number})
    assert pseudonym in found.content.decode()


def test_the_api_refuses_an_administrator_the_review_queue(client, make_user, held_patient):
    _, pseudonym, held = held_patient
    _, token = ApiToken.issue(make_user("admin"), "t")
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    for method, address in (("get", "/api/review/held"),
                            ("get", f"/api/review/held/{held.pk}/image.png"),
                            ("post", f"/api/review/held/{held.pk}/release"),
                            ("post", f"/api/review/held/{held.pk}/reject")):
        answer = getattr(client, method)(address, **bearer)
        assert answer.status_code == 403, address
        assert ADMINS_MAY_NOT_REIDENTIFY in answer.json()["detail"].lower(), address
        assert pseudonym not in answer.content.decode()
    assert HeldImage.objects.get(pk=held.pk).status == HeldStatus.HELD
    assert AuditEvent.objects.filter(action="imaging.held.view.denied").count() == 1
    _, managers = ApiToken.issue(make_user("data-manager"), "t")
    listed = client.get("/api/review/held", HTTP_AUTHORIZATION=f"Bearer {managers}")
    assert listed.status_code == 200 and listed.json()[0]["pseudonym"] == pseudonym


def test_an_administrators_home_and_header_offer_none_of_them(client, make_user):
    client.force_login(make_user("admin"))
    home = client.get("/").content.decode()
    for address in ("/withdraw/", "/remove-study/", "/review/", "/vault/"):
        assert f'href="{address}' not in home, address
    assert 'href="/audit/"' in home and 'href="/dashboard/"' in home  # what stays theirs
