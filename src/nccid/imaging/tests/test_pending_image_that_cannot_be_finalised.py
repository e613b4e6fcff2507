"""A pending image is finalised when its clinical record arrives: a date the shift would take
out of the calendar is removed (the image is stored), and any failure of finalising refuses
the image once, with a reason on its receipt, instead of leaving it to fail at every upload."""

from __future__ import annotations

import pytest

from nccid.clinical.signals import AcceptedRecord, records_accepted
from nccid.config import get_settings, reset_settings_cache
from nccid.imaging.intake import ingest
from nccid.imaging.models import PendingImage
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.services import studies_for_site
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

BOTH = ["default", "vault"]


def _pending(site, person, **values) -> str:
    ds = synthetic_instance(person, plant=False)  # Patient ID: the hospital number, so it waits
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    outcome = ingest(to_bytes(ds), site, "test")
    assert outcome.status is IngestStatus.PENDING
    return outcome.sop_uid


def _accept(site, keyring, person) -> None:
    record = AcceptedRecord(pseudonym=keyring.pseudonym(person.nhs_number),
                            hospital_hash=keyring.hospital_hash(site.code, person.hospital_number),
                            kind="positive", cleaned={})
    records_accepted.send(sender=None, site=site, records=[record], upload_id=1)


@pytest.fixture
def shift_dates(local_warehouse, monkeypatch):
    monkeypatch.setenv("NCCID_DEID_PROFILE", "shift-dates")
    reset_settings_cache()
    assert get_settings().deid_profile == "shift-dates"
    yield
    monkeypatch.delenv("NCCID_DEID_PROFILE")
    reset_settings_cache()


@pytest.mark.django_db(databases=BOTH)
def test_a_date_shifted_out_of_the_calendar_is_removed_and_the_image_linked(
        site, keyring, person_factory, shift_dates):
    person = person_factory(41)
    # Whichever way this patient's offset goes, one of the two dates leaves years 1-9999.
    sop = _pending(site, person, ContentDate="00010101", AcquisitionDate="99991231")
    _accept(site, keyring, person)
    assert ImageRecord.objects.filter(sop_uid=sop).count() == 1
    assert not PendingImage.objects.exists()
    assert studies_for_site(site).get().status == "stored"


@pytest.mark.django_db(databases=BOTH)
def test_an_image_that_cannot_be_finalised_is_refused_once_with_its_reason(
        site, keyring, person_factory, monkeypatch):
    from nccid.imaging.deid import engine

    person = person_factory(42)
    sop = _pending(site, person)
    file_name = PendingImage.objects.get().file_name

    def broken(ds):  # an unforeseen failure inside the engine's finalising step
        raise RuntimeError("an unforeseen failure")

    monkeypatch.setattr(engine, "_reduce_birth_date", broken)
    _accept(site, keyring, person)
    assert not PendingImage.objects.exists()  # not left to be retried at every upload
    assert not (get_settings().pending_dir / file_name).exists()
    assert not ImageRecord.objects.filter(sop_uid=sop).exists()
    receipt = studies_for_site(site).get()
    assert (receipt.pending, receipt.rejected) == (0, 1)
    assert receipt.problem == ("refused when its clinical record arrived: "
                               "malformed DICOM element (RuntimeError)")
