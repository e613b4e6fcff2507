"""Images waiting (pending) or held when a release is upgraded were de-identified by the older
release, which kept values the current rules drop (a hospital number in Patient's Sex, an NHS
number in Patient's Weight, words in Patient's Age). Finalising or releasing them checks the
kept values again, so none of those reaches the warehouse."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread

from nccid.clinical.signals import AcceptedRecord, records_accepted
from nccid.imaging import deps, services
from nccid.imaging.intake import ingest, read_encrypted, write_encrypted
from nccid.imaging.models import HeldImage, PendingImage
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import get_warehouse

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _as_the_old_release_kept_it(name: str, site, sop_uid: str, person) -> None:
    """Rewrite a waiting file with the values the older engine kept as they came."""
    ds = dcmread(BytesIO(read_encrypted(name, site.code, sop_uid)))
    ds.PatientSex = person.hospital_number
    ds.PatientWeight = person.nhs_number
    ds.PatientAge = "45 years"
    buffer = BytesIO()
    ds.save_as(buffer)
    write_encrypted(name, buffer.getvalue(), site.code, sop_uid)


def _stored(sop_uid: str):
    record = ImageRecord.objects.get(sop_uid=sop_uid)
    return dcmread(BytesIO(get_warehouse().read(record.storage_key)))


def _assert_checked(ds, person) -> None:
    assert ds.get("PatientSex", "") in ("", None)
    assert ds.get("PatientWeight") in ("", None)
    assert ds.get("PatientAge", "") in ("", None)
    raw = to_bytes(ds)
    assert person.nhs_number.encode() not in raw and person.hospital_number.encode() not in raw


def test_a_pending_image_of_the_older_release_is_stored_without_its_leaks(
        site, keyring, person_factory):
    person = person_factory(81)
    outcome = ingest(to_bytes(synthetic_instance(person, plant=False)), site, "test")
    assert outcome.status is IngestStatus.PENDING
    row = PendingImage.objects.get(sop_uid=outcome.sop_uid)
    _as_the_old_release_kept_it(row.file_name, site, row.sop_uid, person)

    record = AcceptedRecord(pseudonym=keyring.pseudonym(person.nhs_number),
                            hospital_hash=keyring.hospital_hash(site.code, person.hospital_number),
                            kind="positive", cleaned={})
    records_accepted.send(sender=None, site=site, records=[record], upload_id=1)
    _assert_checked(_stored(outcome.sop_uid), person)


def test_a_held_image_of_the_older_release_is_released_without_its_leaks(
        site, keyring, make_user, person_factory):
    person = person_factory(82)
    ds = synthetic_instance(person, modality="CR", patient_id=person.nhs_number, plant=False)
    ds.BurnedInAnnotation = "YES"
    outcome = ingest(to_bytes(ds), site, "test")
    assert outcome.status is IngestStatus.HELD
    held = HeldImage.objects.get(sop_uid=outcome.sop_uid)
    assert held.pseudonym  # known at once: released straight into the warehouse
    _as_the_old_release_kept_it(held.file_name, site, held.sop_uid, person)

    assert services.release_held(held, make_user("data-manager")) == "stored"
    _assert_checked(_stored(outcome.sop_uid), person)


def test_checking_again_changes_nothing_the_current_engine_wrote(keyring, person_factory):
    person = person_factory(83)
    engine = deps.deidentifier()
    ds = synthetic_instance(person, plant=True)
    data, _ = engine.deidentify_bytes(to_bytes(ds), pseudonym="NCCID-TESTPSEUDONYM1")
    assert engine.recheck_bytes(data) == data
