"""ingest(): stored, duplicate, pending, held and rejected, with receipts for the site."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.uid import DeflatedExplicitVRLittleEndian

from nccid.config import get_settings
from nccid.imaging import deps
from nccid.imaging.intake import ingest, read_header
from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.services import held_images, reject_held, release_held, studies_for_site
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_nhs_number_in_patient_id_is_stored_once_under_its_pseudonym(site, keyring, person_factory):
    person = person_factory(11)
    data = to_bytes(synthetic_instance(person, patient_id=person.nhs_number))
    first = ingest(data, site, "test")
    again = ingest(data, site, "test")
    assert first.status is IngestStatus.STORED
    assert first.sop_uid == keyring.uid(str(dcmread(__import__("io").BytesIO(data)).SOPInstanceUID))
    assert deps.image_exists(first.sop_uid)
    assert again.status is IngestStatus.DUPLICATE and again.sop_uid == first.sop_uid
    receipt = studies_for_site(site).get()
    assert receipt.patient == keyring.pseudonym(person.nhs_number)
    assert receipt.instances == 1 and receipt.stored == 1
    assert receipt.status == "waiting"  # no clinical record names this patient yet


def test_nhs_number_in_other_patient_ids_wins_over_a_hospital_number(site, keyring, person_factory):
    person = person_factory(12)  # PatientID = hospital number, OtherPatientIDs = NHS number
    outcome = ingest(to_bytes(synthetic_instance(person, plant=True)), site, "test")
    assert outcome.status is IngestStatus.STORED
    assert studies_for_site(site).get().patient == keyring.pseudonym(person.nhs_number)


def test_unknown_hospital_number_waits_encrypted_with_an_expiry(site, keyring, person_factory):
    person = person_factory(13)
    outcome = ingest(to_bytes(synthetic_instance(person, plant=False)), site, "test")
    assert outcome.status is IngestStatus.PENDING
    row = PendingImage.objects.get(sop_uid=outcome.sop_uid)
    assert row.hospital_hash == keyring.hospital_hash(site.code, person.hospital_number)
    days = (row.expires_at - row.received_at).days
    assert days in (get_settings().pending_retention_days - 1, get_settings().pending_retention_days)
    on_disk = (get_settings().pending_dir / row.file_name).read_bytes()
    assert b"DICM" not in on_disk and person.hospital_number.encode() not in on_disk
    assert not deps.image_exists(outcome.sop_uid)
    assert studies_for_site(site).get().status == "pending"


def test_burned_in_annotation_is_held_until_a_data_manager_decides(site, keyring, make_user,
                                                                    person_factory):
    person = person_factory(14)
    first = synthetic_instance(person, patient_id=person.nhs_number, instance=1)
    second = synthetic_instance(person, patient_id=person.nhs_number, instance=2)
    first.BurnedInAnnotation = second.BurnedInAnnotation = "YES"
    held = [ingest(to_bytes(ds), site, "test") for ds in (first, second)]
    assert [o.status for o in held] == [IngestStatus.HELD, IngestStatus.HELD]
    assert not deps.image_exists(held[0].sop_uid)
    assert studies_for_site(site).get().status == "held"
    queue = list(held_images())
    assert {h.sop_uid for h in queue} == {o.sop_uid for o in held}

    uploader, manager = make_user("uploader", site=site), make_user("data-manager")
    with pytest.raises(PermissionError):
        release_held(queue[0], uploader)
    assert release_held(queue[0], manager) == "stored"
    reject_held(queue[1], manager, reason="name visible in the corner")
    with pytest.raises(PermissionError):
        release_held(queue[1], manager)  # already decided
    assert deps.image_exists(queue[0].sop_uid) and not deps.image_exists(queue[1].sop_uid)
    assert not list(held_images())
    assert not [p for h in queue for p in get_settings().pending_dir.glob(f"{h.sop_uid}*")]
    from nccid.accounts.models import AuditEvent

    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"imaging.held.release", "imaging.held.reject"} <= actions
    assert HeldImage.objects.filter(status="held").count() == 0
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.held, receipt.stored, receipt.status) == (0, 1, "waiting")


_PIXEL_TAG = b"\xe0\x7f\x10\x00"


def _good(person) -> bytes:
    return to_bytes(synthetic_instance(person, patient_id=person.nhs_number, rows=64, columns=64))


@pytest.mark.parametrize(
    ("make_bad", "reason"),
    [
        (lambda good: b"", "not a DICOM file"),
        (lambda good: b"hello, I am a spreadsheet\n" * 20, "not a DICOM file"),
        (lambda good: good[:-1000], "truncated"),
        (lambda good: good[:400], "incomplete"),
        (lambda good: good[:132] + b"\xff" * 300, "unreadable"),
        (lambda good: good[:good.rfind(_PIXEL_TAG) + 10], "unreadable"),
        (lambda good: good[:good.rfind(_PIXEL_TAG) + 6], "ends before its pixel data"),
        (lambda good: good[:good.rfind(_PIXEL_TAG)], "ends before its pixel data"),
    ],
    ids=["empty", "not-dicom", "truncated-pixels", "truncated-header", "garbage-after-marker",
         "cut-in-pixel-length", "cut-in-pixel-tag", "cut-before-pixels"],
)
def test_bad_files_are_rejected_with_a_reason(site, person_factory, make_bad, reason):
    outcome = ingest(make_bad(_good(person_factory(15))), site, "test")
    assert outcome.status is IngestStatus.REJECTED
    assert reason in outcome.reason
    # Nothing kept; a file whose header could be read counts as refused in its study's receipt.
    receipts = list(StudyReceipt.objects.all())
    assert len(receipts) <= 1
    for receipt in receipts:
        assert (receipt.stored, receipt.pending, receipt.held, receipt.rejected) == (0, 0, 0, 1)
        assert reason in receipt.problem and receipt.status == "rejected"


def test_a_deflated_file_is_not_taken_for_a_truncated_one(site, person_factory):
    """Its elements' offsets are in the inflated stream, longer than the file."""
    ds = synthetic_instance(person_factory(16), rows=64, columns=64)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    assert read_header(buffer.getvalue()).SOPInstanceUID == ds.SOPInstanceUID
    cut = ingest(buffer.getvalue()[:-50], site, "test")
    assert cut.status is IngestStatus.REJECTED and "unreadable" in cut.reason


def test_a_file_whose_meta_names_a_stored_instance_is_refused_not_skipped(site, person_factory):
    """Its dataset is another instance: skipping it as a duplicate of the one its file meta
    names would lose it without a word."""
    person = person_factory(17)
    stored = synthetic_instance(person, patient_id=person.nhs_number, instance=1)
    assert ingest(to_bytes(stored), site, "test").status is not IngestStatus.REJECTED
    other = to_bytes(synthetic_instance(person, patient_id=person.nhs_number, instance=2))
    theirs = synthetic_instance(person, instance=2).SOPInstanceUID.encode()
    ours = stored.SOPInstanceUID.encode().ljust(len(theirs), b"\x00")
    assert len(ours) == len(theirs)
    at = other.index(theirs)  # in the file meta, which comes first
    outcome = ingest(other[:at] + ours + other[at + len(theirs):], site, "test")
    assert outcome.status is IngestStatus.REJECTED
    assert "names another SOP instance" in outcome.reason


def test_an_unknown_transfer_syntax_is_named_not_an_internal_error(site, person_factory):
    data = to_bytes(synthetic_instance(person_factory(18), rows=16, columns=16))
    explicit = b"1.2.840.10008.1.2.1\x00"
    assert data.count(explicit) == 1  # in the file meta
    outcome = ingest(data.replace(explicit, b"1.2.3.4.5.6.7.8.9.1\x00"), site, "test")  # nobody's
    assert outcome.status is IngestStatus.REJECTED
    assert outcome.reason.startswith("unknown transfer syntax")


def test_a_header_of_implausibly_many_elements_is_refused(site, person_factory, monkeypatch):
    from nccid.imaging import intake

    ds = synthetic_instance(person_factory(19), rows=16, columns=16)
    monkeypatch.setattr(intake, "MAX_HEADER_ELEMENTS", 10)
    outcome = ingest(to_bytes(ds), site, "test")
    assert outcome.status is IngestStatus.REJECTED and "elements in the header" in outcome.reason
