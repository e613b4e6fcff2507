"""Rows for the figures tests: stored images and clinical records of synthetic patients."""

from __future__ import annotations

import hashlib
import itertools

from django.utils import timezone

_counter = itertools.count(1)


def add_images(site, pseudonym: str, study: str, modality: str = "DX", count: int = 1,
               set_name: str = "training", size: int = 1000, when=None) -> list:
    """``count`` image rows of one study, as the warehouse records them (keyed UIDs only)."""
    from nccid.warehouse.models import ImageRecord

    rows = []
    for _ in range(count):
        n = next(_counter)
        sop = f"2.25.{n}"
        rows.append(ImageRecord(
            sop_uid=sop, study_uid=f"2.25.9{study}", series_uid=f"2.25.8{study}",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", pseudonym=pseudonym, site=site,
            set_name=set_name, modality=modality, folder=modality.lower(),
            storage_key=f"{set_name}/{modality.lower()}/{pseudonym}/{sop}.dcm",
            metadata_key=f"{set_name}/{modality.lower()}-metadata/{pseudonym}/{sop}.json",
            size=size, sha256=hashlib.sha256(sop.encode()).hexdigest(),
            received_at=when or timezone.now()))
    put_in_set(site, pseudonym, set_name)
    return ImageRecord.objects.bulk_create(rows)


def add_clinical(site, pseudonym: str, kind: str = "positive", set_name: str = "training",
                 **cleaned):
    """A clinical record as the clinical services leave it (pseudonymised, cleaned; the
    warehouse puts the patient in a set, as for images)."""
    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind=kind, sha256="0" * 64, status="accepted")
    put_in_set(site, pseudonym, set_name)
    return ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind=kind, cleaned=cleaned,
                                         digest="0" * 64, last_upload=upload)


def put_in_set(site, pseudonym: str, set_name: str) -> None:
    """The patient's set, kept from the first time they were seen (as ``PatientSet`` is)."""
    from nccid.warehouse.models import PatientSet

    PatientSet.objects.get_or_create(pseudonym=pseudonym,
                                     defaults={"set_name": set_name, "site": site})


def pseudonym(n: int) -> str:
    return f"NCCID-TEST{n:012d}"
