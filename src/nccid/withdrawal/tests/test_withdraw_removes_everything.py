"""Withdrawing a patient removes everything of theirs (warehouse, catalogue, database, vault),
keeps every other patient whole, and survives an interruption."""

from __future__ import annotations

import pytest

from nccid.accounts.models import AuditEvent
from nccid.clinical.models import ClinicalRecord, ClinicalRecordVersion
from nccid.identity.models import VaultEntry
from nccid.imaging.intake import ingest, ingest_many
from nccid.imaging.models import HeldImage, PendingImage, StudyReceipt
from nccid.research.models import TeachingCase, TeachingCollection
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.withdrawal import services
from nccid.withdrawal.models import Withdrawal
from nccid.withdrawal.services import WithdrawalError, holdings, patient_pseudonym, withdraw

from .conftest import PEOPLE, keys_but_markers, send_images, send_sheet

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _keys_naming(warehouse, text: str) -> list[str]:
    """Every object whose key or bytes name ``text`` (the catalogue's Parquet included)."""
    found = []
    for key in keys_but_markers(warehouse):
        if text in key or text.encode() in warehouse.read(key):
            found.append(key)
    return found


def _catalogue_pseudonyms() -> set[str]:
    con = connect_catalogue()
    try:
        names = set()
        for view in ("images", "studies", "clinical", "patients"):
            names |= {row[0] for row in con.execute(f"SELECT DISTINCT pseudonym FROM {view}").fetchall()}
        return names
    finally:
        con.close()


def _held_image(site, person) -> None:
    burned = synthetic_instance(person, modality="US", instance=9, patient_id=person.nhs_number)
    burned.BurnedInAnnotation = "YES"
    assert ingest(to_bytes(burned), site, "test").status == "held"


def test_withdrawal_removes_every_trace_and_keeps_the_other_patient(site, other_site, keyring, patients,
                                                                     manager, backend):
    warehouse = backend
    gone, kept = patients
    _held_image(site, gone.person)
    # a study at another site, known there only by hospital number: waits for a link
    assert {o.status for o in send_images(other_site, gone.person, study=7, by_nhs_number=False)} == {"pending"}
    from nccid.clinical.models import PatientLink

    PatientLink.objects.create(site=other_site, pseudonym=gone.pseudonym,
                               hospital_hash=keyring.hospital_hash(other_site.code,
                                                                   gone.person.hospital_number))
    collection = TeachingCollection.objects.create(name="Teaching", created_by=manager)
    study_uid = ImageRecord.objects.filter(pseudonym=gone.pseudonym).values_list("study_uid", flat=True)[0]
    TeachingCase.objects.create(collection=collection, pseudonym=gone.pseudonym, study_uid=study_uid,
                                added_by=manager)
    send_sheet(site, manager, [gone.person], age=51)  # a second version of the record
    assert ClinicalRecordVersion.objects.filter(record__pseudonym=gone.pseudonym).exists()
    refresh_catalogue()
    assert {gone.pseudonym, kept.pseudonym} <= _catalogue_pseudonyms()
    assert _keys_naming(warehouse, gone.pseudonym)
    from nccid.portal.summary import get_summary

    summary_before = get_summary(max_age=0)
    before = holdings(gone.pseudonym)
    assert (before.images, before.studies, before.clinical_records, before.held, before.pending,
            before.teaching_cases) == (3, 1, 1, 1, 3, 1)
    assert before.sites == (site.code,)

    removed = withdraw(manager, gone.pseudonym, "Patient objected (ticket 42)")

    assert (removed.images, removed.clinical_records, removed.held, removed.pending,
            removed.teaching_cases, removed.vault_entries, removed.sets) == (3, 1, 1, 3, 1, 1, 1)
    assert _keys_naming(warehouse, gone.pseudonym) == []
    for sop_uid in gone.sop_uids:
        assert _keys_naming(warehouse, sop_uid) == []
    assert gone.pseudonym not in _catalogue_pseudonyms()
    assert kept.pseudonym in _catalogue_pseudonyms()
    assert not ImageRecord.objects.filter(pseudonym=gone.pseudonym).exists()
    assert not ClinicalRecord.objects.filter(pseudonym=gone.pseudonym).exists()
    assert not ClinicalRecordVersion.objects.filter(record__pseudonym=gone.pseudonym).exists()
    assert not HeldImage.objects.exists() and not PendingImage.objects.exists()
    assert not TeachingCase.objects.exists()
    assert not PatientSet.objects.filter(pseudonym=gone.pseudonym).exists()
    assert not VaultEntry.objects.filter(pseudonym=gone.pseudonym).exists()
    assert holdings(gone.pseudonym).empty
    summary = get_summary(max_age=0)  # the published figures drop the patient at once
    assert (summary.images, summary.total_patients, summary.patients_with_images) == (
        summary_before.images - 3, summary_before.total_patients - 1,
        summary_before.patients_with_images - 1)
    # the other patient is whole
    assert ImageRecord.objects.filter(pseudonym=kept.pseudonym).count() == 3
    assert ClinicalRecord.objects.filter(pseudonym=kept.pseudonym).count() == 1
    assert VaultEntry.objects.filter(pseudonym=kept.pseudonym).exists()
    for record in ImageRecord.objects.filter(pseudonym=kept.pseudonym):
        assert warehouse.exists(record.storage_key) and warehouse.exists(record.metadata_key)
    # the sites still see what they sent, and what became of it
    receipts = StudyReceipt.objects.filter(patient__in=[gone.pseudonym, *PatientLink.objects.values_list(
        "hospital_hash", flat=True)]).exclude(study_uid__in=ImageRecord.objects.values("study_uid"))
    assert receipts.count() == 2  # the stored study (with the held image), the waiting one
    assert {(r.status, r.stored, r.pending, r.held, r.problem) for r in receipts} == {
        ("rejected", 0, 0, 0, services.REMOVED)}
    entry = Withdrawal.objects.get()
    assert (entry.pseudonym, entry.requested_by, entry.completed_at is not None) == (
        gone.pseudonym, manager.username, True)
    event = AuditEvent.objects.get(action="patient.withdraw")
    assert (event.pseudonym, event.reason, event.detail["images"]) == (
        gone.pseudonym, "Patient objected (ticket 42)", 3)


def test_the_withdrawn_patient_is_refused_at_intake_and_the_vault_never_relearns_them(
        site, keyring, patients, manager, local_warehouse):
    gone, kept = patients
    withdraw(manager, gone.pseudonym, "Consent withdrawn")
    outcomes = send_images(site, gone.person, study=5)
    assert {(o.status, o.reason) for o in outcomes} == {("rejected", services.REFUSAL)}
    assert not ImageRecord.objects.filter(pseudonym=gone.pseudonym).exists()
    assert not VaultEntry.objects.filter(pseudonym=gone.pseudonym).exists()
    receipt = StudyReceipt.objects.filter(site=site, rejected=3, instances=3).exclude(
        problem=services.REMOVED).get()
    assert (receipt.status, receipt.problem) == ("rejected", services.REFUSAL)
    # known only by hospital number at this site (the link the clinical sheet made): refused too
    by_number = send_images(site, gone.person, study=6, by_nhs_number=False)
    assert {o.status for o in by_number} == {"rejected"}
    # in a batch with another patient, only the withdrawn one is refused
    mixed = ingest_many([to_bytes(synthetic_instance(p, study=8, instance=1, patient_id=p.nhs_number))
                         for p in (gone.person, kept.person)], site, "test")
    assert [o.status for o in mixed] == ["rejected", "stored"]


def test_a_sheet_naming_a_withdrawn_patient_refuses_that_row_only(site, patients, manager, local_warehouse):
    gone, kept = patients
    withdraw(manager, gone.pseudonym, "Consent withdrawn")
    upload = send_sheet(site, manager, [gone.person, kept.person, PEOPLE[2]])
    assert upload.status == "accepted"
    assert upload.rejected_rows == 1
    assert [e["reason"] for e in upload.errors if e["row"] == 2] == [
        "this patient has been withdrawn from the database: the row is not stored"]
    assert not ClinicalRecord.objects.filter(pseudonym=gone.pseudonym).exists()
    assert not VaultEntry.objects.filter(pseudonym=gone.pseudonym).exists()
    assert ClinicalRecord.objects.filter(site=site).count() == 2


def test_a_withdrawal_between_check_and_confirmation_keeps_the_row_out(site, keyring, manager,
                                                                       local_warehouse):
    from nccid.clinical.services import confirm_upload, preview_upload
    from nccid.clinical.tests.helpers import sheet_of

    person = PEOPLE[3]
    pseudonym = keyring.pseudonym(person.nhs_number)
    upload = preview_upload(site, "positive", "s.xlsx", sheet_of("positive", [{"age": 40}], [person]),
                            manager)
    assert upload.status == "preview"
    withdraw(manager, pseudonym, "Wrong patient sent")
    confirm_upload(upload, manager)
    assert not ClinicalRecord.objects.filter(pseudonym=pseudonym).exists()
    assert not VaultEntry.objects.filter(pseudonym=pseudonym).exists()


def test_data_that_raced_the_withdrawal_is_swept_before_the_catalogue_shows_it(
        site, patients, manager, local_warehouse, monkeypatch):
    gone, _kept = patients
    withdraw(manager, gone.pseudonym, "Consent withdrawn")
    # an intake that checked the list just before the withdrawal commits its batch after it
    monkeypatch.setattr("nccid.imaging.deps.withdrawn_among", lambda pseudonyms: set())
    assert {o.status for o in send_images(site, gone.person, study=9)} == {"stored"}
    monkeypatch.undo()
    raced = list(ImageRecord.objects.filter(pseudonym=gone.pseudonym).values_list("storage_key", flat=True))
    assert len(raced) == 3
    refresh_catalogue()
    assert gone.pseudonym not in _catalogue_pseudonyms()
    assert not ImageRecord.objects.filter(pseudonym=gone.pseudonym).exists()
    assert not any(local_warehouse.exists(key) for key in raced)
    assert AuditEvent.objects.filter(action="withdrawal.sweep", pseudonym=gone.pseudonym).exists()


def test_an_interrupted_withdrawal_is_completed_by_withdrawing_again(site, patients, manager,
                                                                    local_warehouse, monkeypatch):
    gone, _kept = patients
    real_delete = type(local_warehouse).delete_many

    def crash_after_the_first_image(self, keys):
        keys = list(keys)
        real_delete(self, keys[:2])  # one image and its header JSON, then the disk goes
        raise OSError("disk gone")

    monkeypatch.setattr(type(local_warehouse), "delete_many", crash_after_the_first_image)
    with pytest.raises(OSError):
        withdraw(manager, gone.pseudonym, "Consent withdrawn")
    # already refused at intake, not yet complete
    assert services.withdrawn_among([gone.pseudonym]) == {gone.pseudonym}
    assert Withdrawal.objects.get().completed_at is None
    monkeypatch.setattr(type(local_warehouse), "delete_many", real_delete)
    removed = withdraw(manager, gone.pseudonym, "Consent withdrawn")
    assert removed.images == 3
    assert not ImageRecord.objects.filter(pseudonym=gone.pseudonym).exists()
    assert _keys_naming(local_warehouse, gone.pseudonym) == []
    assert Withdrawal.objects.get().completed_at is not None
    assert AuditEvent.objects.filter(action="patient.withdraw.again").exists()


def test_only_a_data_manager_with_a_reason_may_withdraw(site, keyring, patients, make_user, manager,
                                                      local_warehouse):
    gone, _kept = patients
    for role in ("uploader", "researcher"):
        with pytest.raises(WithdrawalError, match="only data managers"):
            withdraw(make_user(role, site if role == "uploader" else None), gone.pseudonym, "x")
    with pytest.raises(WithdrawalError, match="reason is required"):
        withdraw(manager, gone.pseudonym, "  ")
    with pytest.raises(WithdrawalError, match="must not contain an NHS/CHI number"):
        withdraw(manager, gone.pseudonym, f"patient {gone.person.nhs_number} objected")
    assert not Withdrawal.objects.exists()
    assert ImageRecord.objects.filter(pseudonym=gone.pseudonym).count() == 3


def test_a_patient_is_named_by_nhs_number_or_pseudonym_and_nothing_else(keyring):
    person = PEOPLE[4]
    pseudonym = keyring.pseudonym(person.nhs_number)
    assert patient_pseudonym(person.nhs_number) == pseudonym
    assert patient_pseudonym(f" {person.nhs_number[:3]} {person.nhs_number[3:6]} {person.nhs_number[6:]} ") == pseudonym
    assert patient_pseudonym(pseudonym.lower()) == pseudonym
    for wrong in ("", "NCCID-short", person.nhs_number[:-1] + str((int(person.nhs_number[-1]) + 1) % 10),
                  person.family_name):
        with pytest.raises(WithdrawalError) as caught:
            patient_pseudonym(wrong)
        assert not wrong or wrong not in str(caught.value)


def test_a_reinstated_patient_is_accepted_again(site, patients, manager, local_warehouse):
    gone, _kept = patients
    withdraw(manager, gone.pseudonym, "Consent withdrawn")
    assert services.reinstate(manager, gone.pseudonym, "Withdrawn in error (ticket 43)")
    assert not services.reinstate(manager, gone.pseudonym, "again")
    assert {o.status for o in send_images(site, gone.person, study=4)} == {"stored"}
    assert AuditEvent.objects.filter(action="patient.reinstate", pseudonym=gone.pseudonym).exists()


def test_holdings_list_research_hand_outs_since_the_patient_arrived(site, patients, manager, make_user,
                                                                   local_warehouse):
    from nccid.accounts.models import audit

    gone, _kept = patients
    researcher = make_user("researcher")
    audit(researcher, "research.export", filter={}, sets=["training", "validation"])
    audit(researcher, "research.cohort", filter={}, sets=["training"])  # counts only: not listed
    handed = holdings(gone.pseudonym).handed_out
    assert [(h.username, h.action) for h in handed] == [(researcher.username, "research.export")]
