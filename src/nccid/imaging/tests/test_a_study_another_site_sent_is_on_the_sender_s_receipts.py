"""A study the warehouse already held from another site's sending, sent by a second site (a
shared PACS, an image passed between hospitals), was a duplicate dropped before any receipt:
the second site's My uploads and /api/studies never listed it, though they list every study a
site sent. It now has a receipt there, 'already held', counting those instances once, naming
no other site; its patient and modality are the stored study's. A site's own resend is
unchanged, and neither kind of duplicate is parsed (a re-import of all stays cheap)."""

from __future__ import annotations

import pytest

from nccid.imaging import intake
from nccid.imaging.intake import ingest_many, refresh_receipt_status
from nccid.imaging.models import ReceiptStatus, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.services import studies_for_site
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _study(person, count: int, first: int = 1) -> list[bytes]:
    return [to_bytes(synthetic_instance(person, modality="CT", instance=i, plant=False,
                                        patient_id=person.nhs_number))
            for i in range(first, first + count)]


@pytest.fixture
def parses(monkeypatch) -> list[int]:
    """Each header intake parses (its size), so a test can say none was."""
    calls: list[int] = []
    real = intake._parse

    def parse(data):
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(intake, "_parse", parse)
    return calls


def _statuses(outcomes) -> list[IngestStatus]:
    return [o.status for o in outcomes]


def test_a_study_another_site_sent_is_listed_already_held_for_the_sender(
        site, other_site, keyring, person_factory, parses):
    person = person_factory(90)
    files = _study(person, 2)
    assert _statuses(ingest_many(files, other_site, "test")) == [IngestStatus.STORED] * 2
    theirs = StudyReceipt.objects.get(site=other_site)
    parses.clear()

    for _ in range(2):  # sent twice: each instance is counted once
        outcomes = ingest_many(files, site, "node")
        assert _statuses(outcomes) == [IngestStatus.DUPLICATE] * 2
    assert parses == []  # duplicates are known by their keyed UID, never parsed

    ours = StudyReceipt.objects.get(site=site)
    assert (ours.study_uid, ours.modality, ours.patient) == (
        theirs.study_uid, "CT", keyring.pseudonym(person.nhs_number))
    assert (ours.instances, ours.already_held, ours.stored, ours.pending, ours.held,
            ours.rejected, ours.status) == (2, 2, 0, 0, 0, 0, ReceiptStatus.ALREADY_HELD)
    assert (ours.problem, ours.source) == ("", "node")  # nothing names the other site
    shown = studies_for_site(site, as_the_site=True).get()
    assert shown.shown_status == "already_held"
    assert [r.pk for r in studies_for_site(site, "already_held", as_the_site=True)] == [ours.pk]
    refresh_receipt_status(StudyReceipt.objects.filter(site=site))  # (as linking does)
    assert StudyReceipt.objects.get(site=site).status == ReceiptStatus.ALREADY_HELD
    theirs_after = StudyReceipt.objects.get(site=other_site)
    assert (theirs_after.instances, theirs_after.stored, theirs_after.already_held) == (2, 2, 0)


def test_the_study_s_own_new_instances_then_count_as_stored_beside_them(
        site, other_site, keyring, person_factory):
    person = person_factory(91)
    ingest_many(_study(person, 2), other_site, "test")
    outcomes = ingest_many(_study(person, 3), site, "test")  # two held already, one new

    assert _statuses(outcomes) == [IngestStatus.DUPLICATE] * 2 + [IngestStatus.STORED]
    ours = StudyReceipt.objects.get(site=site)
    assert (ours.instances, ours.already_held, ours.stored, ours.status) == (
        3, 2, 1, ReceiptStatus.WAITING)


def test_a_site_s_own_resend_is_unchanged_and_not_parsed(site, keyring, person_factory,
                                                          parses):
    files = _study(person_factory(92), 3)
    ingest_many(files, site, "test")
    before = StudyReceipt.objects.values().get(site=site)
    parses.clear()

    assert _statuses(ingest_many(files, site, "test")) == [IngestStatus.DUPLICATE] * 3
    assert parses == []
    assert StudyReceipt.objects.values().get(site=site) == before
    assert (before["instances"], before["already_held"], before["status"]) == (3, 0, "waiting")
