"""The other parts intake relies on, behind one seam: de-identification, the warehouse, the
clinical patient links and the withdrawal list, each exactly the other part's contract
(docs/architecture.md)."""

from __future__ import annotations

from functools import lru_cache

from django.db.models import Exists, OuterRef

from nccid.config import get_settings
from nccid.identity.service import get_keyring
from nccid.imaging.deid import Deidentifier, image_meta
from nccid.modalities import non_image_modalities
from nccid.warehouse.deid_profile import date_shift_scheme
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import store_image
from nccid.withdrawal.services import REFUSAL as WITHDRAWN_REFUSAL
from nccid.withdrawal.services import (
    STUDY_REFUSAL,
    listed_removed_studies,
    listed_withdrawn,
    removed_studies_among,
    withdrawn_among,
)

__all__ = ["STUDY_REFUSAL", "WITHDRAWN_REFUSAL", "clinical_pseudonyms", "deidentifier", "has_clinical_record", "image_exists", "image_site_id", "images_existing_query", "image_meta", "link_images",
           "non_image_modalities", "pseudonym_for_hospital_number", "last_sheet_confirmed_at", "listed_removed_studies", "listed_withdrawn", "removed_studies_among", "site_sent_clinical_record", "store_image",
           "withdrawn_among"]


@lru_cache(maxsize=4)
def _deidentifier(profile: str, fingerprint: str, date_shift: str) -> Deidentifier:
    return Deidentifier(get_keyring(), profile=profile, date_shift=date_shift)


def deidentifier() -> Deidentifier:
    """The de-identifier for this deployment's profile and the installation's date shift
    scheme, the one its clinical dates follow (built once per profile, key and scheme)."""
    return _deidentifier(get_settings().deid_profile, get_keyring().fingerprint,
                         date_shift_scheme())


def image_exists(sop_uid: str) -> bool:
    return ImageRecord.objects.filter(sop_uid=sop_uid).exists()


def image_site_id(sop_uid: str) -> int | None:
    """The id of the site whose copy of this instance is stored, or None if none is."""
    return ImageRecord.objects.filter(sop_uid=sop_uid).values_list("site_id", flat=True).first()


def images_existing_query(sop_uids: list[str]):
    """Those of these SOP Instance UIDs (a few hundred at most) already stored, as a query
    of ``sop_uid`` values (to combine with others into one)."""
    return ImageRecord.objects.filter(sop_uid__in=sop_uids).values_list("sop_uid", flat=True)


def pseudonym_for_hospital_number(site, hospital_hash: str) -> str | None:
    from nccid.clinical.services import pseudonym_for_hospital_number as lookup

    return lookup(site, hospital_hash)


def last_sheet_confirmed_at(site_ids: set[int]) -> dict[int, object]:
    """Of these sites, those that have confirmed a clinical sheet: site id -> when the last
    was confirmed (one query)."""
    from django.db.models import Max

    from nccid.clinical.models import Upload

    return dict(Upload.objects.filter(site_id__in=site_ids, status=Upload.Status.ACCEPTED,
                                      confirmed_at__isnull=False)
                .order_by().values("site_id").annotate(last=Max("confirmed_at"))
                .values_list("site_id", "last"))


def has_clinical_record(pseudonym: str) -> bool:
    """Whether any clinical record names this patient (at any site)."""
    from nccid.clinical.models import ClinicalRecord

    return ClinicalRecord.objects.filter(pseudonym=pseudonym).exists()


def clinical_pseudonyms(pseudonyms: set[str]) -> set[str]:
    """Those of these patients named by any clinical record (at any site)."""
    if not pseudonyms:
        return set()
    from nccid.clinical.models import ClinicalRecord

    wanted = sorted(pseudonyms)
    return {p for first in range(0, len(wanted), 500)
            for p in ClinicalRecord.objects.filter(pseudonym__in=wanted[first:first + 500])
            .values_list("pseudonym", flat=True).distinct()}


def site_sent_clinical_record() -> Exists:
    """For a query of receipts: whether the receipt's own site sent a clinical record naming
    its patient (a record of another site is not that site's to know of)."""
    from nccid.clinical.models import ClinicalRecord

    return Exists(ClinicalRecord.objects.filter(site_id=OuterRef("site_id"),
                                                pseudonym=OuterRef("patient")))


def link_images(pseudonyms: set[str]) -> None:
    """These patients' stored images are linked to a clinical record (as the warehouse marks
    them when the record arrives)."""
    wanted = sorted(pseudonyms)
    for first in range(0, len(wanted), 500):
        ImageRecord.objects.filter(pseudonym__in=wanted[first:first + 500],
                                   linked=False).update(linked=True)
