"""Importers racing a clinical sheet: an importer finds an instance free when it parses it and
no link for its patient, and by the time it keeps it waiting another process has stored it
(a linker, from that process's own waiting copy, since settled). The late copy made a second
waiting row, counted on the receipt, which the next link then "settled" as stored again: a
study of 5 images read 20 on My uploads (found by the scale-out review). The waiting row is
now made only while the instance is not stored, checked after the row exists (so that on
PostgreSQL a linker's settling, which deletes the other row, is waited for and its stored
image seen); a late copy is a duplicate and counts nothing.

A store the late copy cannot see (on PostgreSQL, the site's own batch storing the instance
directly, its transaction still open) still lets a copy wait, counted: when it links, a copy
no linker had claimed before, of an instance the site has stored, is taken back from the
receipt instead of being settled as stored a second time (found by the regression review)."""

from __future__ import annotations

import pytest

from nccid.config import get_settings
from nccid.imaging import intake
from nccid.imaging.intake import ingest
from nccid.imaging.linking import link_known
from nccid.imaging.models import PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

from .sheets import record_and_link

pytestmark = [pytest.mark.django_db(databases=["default", "vault"]),
              pytest.mark.usefixtures("pending_folder")]


def _counts(site) -> tuple[int, int, int]:
    receipt = StudyReceipt.objects.get(site=site)
    return receipt.instances, receipt.stored, receipt.pending


def test_a_copy_kept_waiting_after_another_process_stored_it_is_a_duplicate(
        site, keyring, person_factory, monkeypatch):
    person = person_factory(151)
    first = to_bytes(synthetic_instance(person, plant=False, patient_id=person.hospital_number))
    assert ingest(first, site, "test").status is IngestStatus.PENDING
    record_and_link(site, keyring, person)
    assert link_known().linked == 1  # stored from the waiting copy, which is settled
    assert _counts(site) == (1, 1, 0)

    # A second importer parsed the same instance before all this (nothing taken then) under a
    # hospital number no sheet links: it comes to keep it waiting only now.
    late = to_bytes(synthetic_instance(person, plant=False, patient_id="HOSPZQX991"))
    monkeypatch.setattr(intake, "_taken", lambda site, uids, resent: set())
    outcome = ingest(late, site, "test")

    assert (outcome.status, outcome.reason) == (IngestStatus.DUPLICATE, "already received")
    assert not PendingImage.objects.exists()
    assert not list(get_settings().pending_dir.glob("*.pending"))  # its file not left behind
    assert ImageRecord.objects.count() == 1
    assert _counts(site) == (1, 1, 0)


def _stored_and_a_copy_waiting_unseen(site, person, monkeypatch) -> None:
    """The instance stored by the site's batch, and a copy of it kept waiting by a process
    that found it free and could not see that store (still uncommitted, on PostgreSQL)."""
    from nccid.imaging import deps

    stored = to_bytes(synthetic_instance(person, plant=False, patient_id=person.nhs_number))
    assert ingest(stored, site, "test").status is IngestStatus.STORED
    copy = to_bytes(synthetic_instance(person, plant=False, patient_id=person.hospital_number))
    with monkeypatch.context() as unseen:
        unseen.setattr(intake, "_taken", lambda site, uids, resent: set())
        unseen.setattr(deps, "image_exists", lambda sop_uid: False)
        assert ingest(copy, site, "test").status is IngestStatus.PENDING
    assert _counts(site) == (2, 1, 1)  # what the race leaves


def test_a_waiting_copy_of_an_instance_its_site_stored_unseen_is_taken_back_when_linked(
        site, keyring, person_factory, monkeypatch):
    person = person_factory(152)
    _stored_and_a_copy_waiting_unseen(site, person, monkeypatch)

    record_and_link(site, keyring, person)
    link_known()

    assert not PendingImage.objects.exists()
    assert not list(get_settings().pending_dir.glob("*.pending"))
    assert ImageRecord.objects.count() == 1
    assert _counts(site) == (1, 1, 0)
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.status, receipt.patient) == ("stored", keyring.pseudonym(person.nhs_number))
    assert receipt.bytes == ImageRecord.objects.get().size


def test_a_store_committed_while_the_copy_is_linked_takes_the_copy_back_too(
        site, keyring, person_factory, monkeypatch):
    """The site's batch commits between the linker's look and its store (on PostgreSQL the
    store waits for the batch, then finds its record): taken back the same way."""
    from nccid.imaging import deps

    person = person_factory(153)
    _stored_and_a_copy_waiting_unseen(site, person, monkeypatch)
    record_and_link(site, keyring, person)
    monkeypatch.setattr(deps, "image_site_id", lambda sop_uid: None)  # (looked before it)
    link_known()

    assert not PendingImage.objects.exists() and ImageRecord.objects.count() == 1
    assert _counts(site) == (1, 1, 0)
