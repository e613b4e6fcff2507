"""Releasing a held image waiting for its patient's link: a sheet confirmed during the release
still gets the image linked (the release looks for the link again after its commit), and an
image de-identification cannot finish is refused to the data manager, still held."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.config import get_settings
from nccid.imaging import services
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage, HeldStatus, PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

from .sheets import record_and_link

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _held_by_hospital_number(site, person) -> HeldImage:
    ds = synthetic_instance(person, modality="CR", study=7, plant=False)
    ds.BurnedInAnnotation = "YES"
    outcome = ingest(to_bytes(ds), site, "test")
    assert outcome.status is IngestStatus.HELD
    return HeldImage.objects.get(sop_uid=outcome.sop_uid)


def _sheet_linked(site, keyring, person) -> None:
    """What a confirmed sheet leaves: the patient's record and hospital-number link."""
    record_and_link(site, keyring, person)


def test_a_held_image_released_while_its_sheet_is_confirmed_is_stored(
        site, keyring, make_user, person_factory, monkeypatch):
    """On PostgreSQL the sheet commits after the release looked for the link and before the
    release commits, and the sheet's linker cannot see the uncommitted waiting row. Here the
    link is made inside the release's transaction, just after its look-up, with no linker run
    for it (SQLite lets one writer in at a time): what the release sees is the same."""
    person = person_factory(74)
    held = _held_by_hospital_number(site, person)
    write_encrypted = services.write_encrypted

    def sheet_confirmed_meanwhile(*args, **kwargs):
        _sheet_linked(site, keyring, person)
        return write_encrypted(*args, **kwargs)

    monkeypatch.setattr(services, "write_encrypted", sheet_confirmed_meanwhile)
    assert services.release_held(held, make_user("data-manager")) == "stored"
    assert not PendingImage.objects.exists()
    stored = ImageRecord.objects.get(sop_uid=held.sop_uid)
    assert stored.pseudonym == keyring.pseudonym(person.nhs_number)
    receipt = StudyReceipt.objects.get()
    assert (receipt.held, receipt.pending, receipt.stored, receipt.status) == (0, 0, 1, "stored")
    assert not list(get_settings().pending_dir.glob(f"{held.sop_uid}.*"))


def _cannot_finalise(monkeypatch) -> None:
    from nccid.imaging.deid import engine

    def broken(ds):  # an unforeseen failure inside the engine's finalising step
        raise RuntimeError("an unforeseen failure")

    monkeypatch.setattr(engine, "_reduce_birth_date", broken)


def test_a_release_that_cannot_be_finalised_is_refused_and_the_image_stays_held(
        site, keyring, make_user, person_factory, monkeypatch):
    person = person_factory(75)
    held = _held_by_hospital_number(site, person)
    _sheet_linked(site, keyring, person)
    _cannot_finalise(monkeypatch)
    with pytest.raises(services.HeldDecisionError, match="cannot be released") as refused:
        services.release_held(held, make_user("data-manager"))
    assert "malformed DICOM element (RuntimeError)" in str(refused.value)
    held.refresh_from_db()
    assert held.status == HeldStatus.HELD
    assert (get_settings().pending_dir / held.file_name).exists()
    assert not PendingImage.objects.exists() and not ImageRecord.objects.exists()
    assert StudyReceipt.objects.get().held == 1


def test_the_review_page_says_why_a_release_was_refused(site, keyring, make_user,
                                                        person_factory, monkeypatch, client):
    person = person_factory(76)
    held = _held_by_hospital_number(site, person)
    _sheet_linked(site, keyring, person)
    _cannot_finalise(monkeypatch)
    client.force_login(make_user("data-manager"))
    response = client.post(reverse("figures:review_decide", args=[held.pk, "release"]),
                           follow=True)
    assert response.status_code == 200
    assert "cannot be released" in response.content.decode()
    held.refresh_from_db()
    assert held.status == HeldStatus.HELD
