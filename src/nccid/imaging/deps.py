"""The other parts intake relies on, behind one seam: de-identification, the warehouse and
the clinical patient links. Each name here is exactly the other part's contract
(docs/architecture.md)."""

from __future__ import annotations

from functools import lru_cache

from nccid.config import get_settings
from nccid.identity.service import get_keyring


@lru_cache(maxsize=4)
def _deidentifier(profile: str, fingerprint: str):
    try:
        from nccid.imaging.deid import Deidentifier
    except ImportError:  # TEMPORARY until the deid library lands
        from ._fallbacks import Deidentifier
    return Deidentifier(get_keyring(), profile=profile)


def deidentifier():
    """The de-identifier for this deployment's profile (cached per profile and key)."""
    return _deidentifier(get_settings().deid_profile, get_keyring().fingerprint)


def image_meta(ds):
    try:
        from nccid.imaging.deid import image_meta as meta
    except ImportError:  # TEMPORARY
        from ._fallbacks import image_meta as meta

    return meta(ds)


def assign_patient(ds, pseudonym: str) -> None:
    try:
        from nccid.imaging.deid import assign_patient as assign
    except ImportError:  # TEMPORARY
        from ._fallbacks import assign_patient as assign

    assign(ds, pseudonym)


def store_image(site, pseudonym: str, data: bytes, meta):
    try:
        from nccid.warehouse.service import store_image as store
    except ImportError:  # TEMPORARY
        from ._fallbacks import store_image as store

    return store(site, pseudonym, data, meta)


def image_exists(sop_uid: str) -> bool:
    try:
        from nccid.warehouse.models import ImageRecord
    except ImportError:  # TEMPORARY
        from ._fallbacks import image_exists as exists

        return exists(sop_uid)
    return ImageRecord.objects.filter(sop_uid=sop_uid).exists()


def pseudonym_for_hospital_number(site, hospital_hash: str) -> str | None:
    try:
        from nccid.clinical.services import pseudonym_for_hospital_number as lookup
    except ImportError:  # TEMPORARY
        return None

    return lookup(site, hospital_hash)


def has_clinical_record(pseudonym: str) -> bool:
    """Whether any clinical record names this patient (at any site)."""
    try:
        from nccid.clinical.models import ClinicalRecord
    except ImportError:  # TEMPORARY
        return False

    return ClinicalRecord.objects.filter(pseudonym=pseudonym).exists()
