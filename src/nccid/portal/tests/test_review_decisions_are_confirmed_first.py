"""Releasing or rejecting a held image cannot be undone (a rejected image is deleted; a released
one may reach researchers), so the review queue's buttons only ask: a page of its own says what
the decision does, and only its Confirm (a POST with the CSRF token) decides. Cancel, or a slip
on the queue, decides nothing."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from nccid.accounts.models import AuditEvent
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage, HeldStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def held(site, keyring) -> HeldImage:
    person = people(1, seed=61)[0]
    ds = synthetic_instance(person, patient_id=person.nhs_number, instance=1)
    ds.BurnedInAnnotation = "YES"
    assert ingest(to_bytes(ds), site, "test").status == "held"
    return HeldImage.objects.get()


def forms(body: str) -> list[str]:
    return re.findall(r"<form\b[^>]*>", body)


def test_the_queue_buttons_ask_first_and_decide_nothing(client, make_user, held):
    client.force_login(make_user("data-manager"))
    queue = client.get(reverse("figures:review") + "?page=1").content.decode()
    for action in ("release", "reject"):
        address = reverse("figures:review_decide", args=[held.pk, action])
        form, = [f for f in forms(queue) if f'action="{address}"' in f]
        assert 'method="get"' in form  # a slip opens the question, it decides nothing
    asked = client.get(reverse("figures:review_decide", args=[held.pk, "reject"]), {"page": "1"})
    assert asked.status_code == 200
    body = asked.content.decode()
    assert f"<h1>Reject image {held.pk}?</h1>" in body
    assert "This deletes it; it cannot be undone." in body
    reject = reverse("figures:review_decide", args=[held.pk, "reject"])
    confirm, = [f for f in forms(body) if f'action="{reject}"' in f]
    assert 'method="post"' in confirm
    assert "csrfmiddlewaretoken" in body
    assert '<input type="hidden" name="page" value="1">' in body
    assert f'href="{reverse("figures:review")}?page=1">Cancel</a>' in body
    assert HeldImage.objects.get(pk=held.pk).status == HeldStatus.HELD
    assert not AuditEvent.objects.filter(action__in=["imaging.held.reject",
                                                     "imaging.held.release"]).exists()


def test_the_release_question_says_to_check_for_names(client, make_user, held):
    client.force_login(make_user("data-manager"))
    body = client.get(reverse("figures:review_decide", args=[held.pk, "release"])).content.decode()
    assert f"<h1>Release image {held.pk} into the warehouse?</h1>" in body
    assert "Check it shows no names" in body
    assert f'src="{reverse("figures:review_image", args=[held.pk])}"' in body
    assert f'href="{reverse("figures:review")}">Cancel</a>' in body  # no page: the first
    assert HeldImage.objects.get(pk=held.pk).status == HeldStatus.HELD


@pytest.mark.parametrize("action, status, done", [
    ("reject", HeldStatus.REJECTED, "rejected and deleted"),
    ("release", HeldStatus.RELEASED, "released into the warehouse")])
def test_confirm_decides_and_is_audited(client, make_user, held, action, status, done):
    manager = make_user("data-manager")
    client.force_login(manager)
    decided = client.post(reverse("figures:review_decide", args=[held.pk, action]),
                          {"page": "1"}, follow=True)
    assert decided.redirect_chain[-1][0] == reverse("figures:review") + "?page=1"
    assert done in decided.content.decode()
    assert HeldImage.objects.get(pk=held.pk).status == status
    assert AuditEvent.objects.filter(action=f"imaging.held.{action}",
                                     username=manager.username).count() == 1


def test_asking_about_an_image_already_decided_says_so(client, make_user, held):
    client.force_login(make_user("data-manager"))
    reject = reverse("figures:review_decide", args=[held.pk, "reject"])
    client.post(reject)  # another data manager's confirm
    for action in ("release", "reject"):
        asked = client.get(reverse("figures:review_decide", args=[held.pk, action]),
                           {"page": "2"}, follow=True)
        assert asked.redirect_chain[0][0] == reverse("figures:review") + "?page=2"
        assert "already been decided" in asked.content.decode()
    assert client.get(reverse("figures:review_decide", args=[held.pk, "keep"])).status_code == 404


def test_only_data_managers_are_asked(client, site, make_user, held):
    address = reverse("figures:review_decide", args=[held.pk, "reject"])
    assert client.get(address, {"page": "2"})["Location"] == "/login/?next=/review/%3Fpage%3D2"
    for role in ("uploader", "researcher"):
        client.force_login(make_user(role, site=site if role == "uploader" else None))
        assert client.get(address).status_code == 403
