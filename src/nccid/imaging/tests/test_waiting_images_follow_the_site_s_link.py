"""Waiting images are linked by the site's link of their hospital number, as intake links the
number's later images (``identify``), not by the pseudonym of the sheet row that arrived: a
corrected sheet naming another patient for a linked number keeps the link (and warns), so its
waiting images went to the row's patient while the number's later images followed the link.
Every stored image records the hospital number (keyed, site-scoped) that linked it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nccid.clinical.signals import AcceptedRecord, records_accepted
from nccid.imaging.intake import ingest
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

from .sheets import record_and_link

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _send(site, person, study: int, **kwargs):
    return [ingest(to_bytes(synthetic_instance(person, study=study, instance=i, plant=False,
                                               **kwargs)), site, "test").status
            for i in (1, 2)]


def test_waiting_images_go_to_the_linked_patient_not_the_corrected_row_s(site, keyring,
                                                                         person_factory):
    real = person_factory(61)
    typo = replace(real, nhs_number=person_factory(62).nhs_number)  # the sheet's wrong number
    assert _send(site, real, study=1) == [IngestStatus.PENDING] * 2
    linked, hospital_hash, _ = record_and_link(site, keyring, typo)  # (its linker not run)
    corrected = AcceptedRecord(pseudonym=keyring.pseudonym(real.nhs_number),
                               hospital_hash=hospital_hash, kind="positive", cleaned={})
    records_accepted.send(sender=None, site=site, records=[corrected], upload_id=2)

    assert _send(site, real, study=2) == [IngestStatus.STORED] * 2
    assert {r.pseudonym for r in ImageRecord.objects.all()} == {linked}  # one patient, the link's
    assert ImageRecord.objects.count() == 4


def test_stored_images_record_the_hospital_number_that_linked_them(site, keyring, person_factory):
    person = person_factory(63)
    hospital_hash = keyring.hospital_hash(site.code, person.hospital_number)
    assert _send(site, person, study=1) == [IngestStatus.PENDING] * 2
    record_and_link(site, keyring, person)
    records_accepted.send(sender=None, site=site, upload_id=1, records=[AcceptedRecord(
        pseudonym=keyring.pseudonym(person.nhs_number), hospital_hash=hospital_hash,
        kind="positive", cleaned={})])
    assert _send(site, person, study=2) == [IngestStatus.STORED] * 2  # linked at intake
    assert _send(site, person, study=3, patient_id=person.nhs_number) == [IngestStatus.STORED] * 2

    by_study = {}
    for row in ImageRecord.objects.order_by("received_at"):
        by_study.setdefault(row.hospital_hash, set()).add(row.study_uid)
    # waiting then linked, and linked at intake: the number's hash; by NHS number: none
    assert [len(by_study[hospital_hash]), len(by_study[""])] == [2, 1]
    assert set(by_study) == {hospital_hash, ""}
