"""A study's receipt (My uploads' modality column, /api/studies) names the modality of its
image objects: a presentation state stored before the study's DX image named the study PR.
An object that is not an image names it only while the study has no image."""

from __future__ import annotations

import pytest

from nccid.imaging.intake import ingest_many
from nccid.imaging.models import StudyReceipt
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PRESENTATION_STATE = "1.2.840.10008.5.1.4.1.1.11.1"
PIXEL_MODULE = ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation")


def _object(person, modality: str, instance: int, by_nhs_number: bool) -> bytes:
    ds = synthetic_instance(person, modality=modality, study=8, series=instance,
                            instance=instance, plant=False,
                            patient_id=person.nhs_number if by_nhs_number else None)
    if modality == "PR":  # a presentation state: no pixels
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PRESENTATION_STATE
        for keyword in PIXEL_MODULE:
            delattr(ds, keyword)
    return to_bytes(ds)


def _receipt_after(site, person, order: tuple[str, ...], by_nhs_number: bool = True):
    for instance, modality in enumerate(order, start=1):
        outcomes = ingest_many([_object(person, modality, instance, by_nhs_number)], site, "test")
        assert {o.status.value for o in outcomes} <= {"stored", "pending"}, outcomes
    return StudyReceipt.objects.get(site=site)


@pytest.mark.parametrize("order", [("PR", "DX"), ("DX", "PR")])
def test_a_stored_study_is_named_by_its_image_in_either_order(site, keyring, person_factory,
                                                              order):
    receipt = _receipt_after(site, person_factory(80), order)
    assert (receipt.modality, receipt.stored) == ("DX", 2)


def test_a_study_waiting_for_its_link_is_named_by_its_image_too(site, keyring, person_factory):
    receipt = _receipt_after(site, person_factory(81), ("PR", "DX"), by_nhs_number=False)
    assert (receipt.modality, receipt.pending) == ("DX", 2)


def test_a_study_of_a_presentation_state_only_is_named_by_it(site, keyring, person_factory):
    assert _receipt_after(site, person_factory(82), ("PR",)).modality == "PR"
