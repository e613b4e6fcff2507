"""What a confirmed clinical sheet leaves behind, made directly for linking tests."""

from __future__ import annotations


def record_and_link(site, keyring, person) -> tuple[str, str, object]:
    """The patient's clinical record and hospital-number link committed, as a confirmed sheet
    leaves them (its receivers, the linker among them, not run); (pseudonym, hash, upload)."""
    from nccid.clinical.models import ClinicalRecord, PatientLink, Upload

    pseudonym = keyring.pseudonym(person.nhs_number)
    hospital_hash = keyring.hospital_hash(site.code, person.hospital_number)
    upload = Upload.objects.create(site=site, kind="positive", sha256="0" * 64, status="accepted")
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  hospital_hash=hospital_hash, digest="0" * 64, last_upload=upload)
    PatientLink.objects.create(site=site, hospital_hash=hospital_hash, pseudonym=pseudonym)
    return pseudonym, hospital_hash, upload
