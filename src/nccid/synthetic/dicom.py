"""Synthetic DICOM instances of synthetic people, optionally with identifiers planted
in every place a leak could hide (the de-identification tests scan for them afterwards)."""

from __future__ import annotations

from datetime import date

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from .people import Person

SOP_CLASSES = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",    # Computed Radiography Image Storage
    "CT": "1.2.840.10008.5.1.4.1.1.2",    # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",    # MR Image Storage
    "US": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
}
ORIGINAL_ROOT = "1.2.826.0.1.3680043.9.7433."  # an invented root for "original" UIDs


def original_uid(person: Person, *parts: int) -> str:
    """A stable 'original' UID for a person's study/series/instance (so resends match).
    A valid UID: no component starts with a zero (hence ``int``)."""
    return ORIGINAL_ROOT + str(int(person.nhs_number[3:])) + "." + ".".join(map(str, parts))


def synthetic_instance(
    person: Person,
    *,
    modality: str = "DX",
    study: int = 1,
    series: int = 1,
    instance: int = 1,
    rows: int = 64,
    columns: int = 64,
    bits: int = 16,
    study_date: date = date(2020, 4, 2),
    patient_id: str | None = None,
    plant: bool = True,
    pixel_seed: int | None = None,
) -> Dataset:
    """One image of ``person``. PatientID is the hospital number unless ``patient_id`` is given.

    With ``plant``, identifiers are also written where a careless de-identifier would miss them:
    free text, Other Patient IDs, a private tag, a nested sequence and a referenced UID.
    """
    ds = Dataset()
    sop_uid = original_uid(person, study, series, instance)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASSES.get(modality, SOP_CLASSES["DX"])
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = original_uid(person, study)
    ds.SeriesInstanceUID = original_uid(person, study, series)
    ds.FrameOfReferenceUID = original_uid(person, study, series, 0)
    ds.Modality = modality
    ds.PatientName = person.dicom_name
    ds.PatientID = patient_id if patient_id is not None else person.hospital_number
    ds.PatientBirthDate = person.birth_date.strftime("%Y%m%d")
    ds.PatientSex = person.sex
    ds.PatientAge = f"{person.age_on:03d}Y"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber = f"ACC{person.hospital_number}"
    ds.StudyID = str(study)
    ds.SeriesNumber = series
    ds.InstanceNumber = instance
    ds.Manufacturer = "Synthetic Medical Systems"
    ds.ManufacturerModelName = "Model S"
    ds.InstitutionName = "Royal Test Infirmary"
    ds.ReferringPhysicianName = "Doctor^Pretend"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA" if modality in ("DX", "CR") else ""
    ds.PixelSpacing = [0.5, 0.5] if modality != "DX" else None
    if modality == "DX":
        del ds.PixelSpacing
        ds.ImagerPixelSpacing = [0.139, 0.139]
    ds.BurnedInAnnotation = "NO"

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(pixel_seed if pixel_seed is not None else instance)
    dtype = np.uint16 if ds.BitsAllocated == 16 else np.uint8
    ds.PixelData = rng.integers(0, 2**bits - 1, size=(rows, columns), dtype=dtype).tobytes()

    if plant:
        plant_identifiers(ds, person)
    return ds


def plant_identifiers(ds: Dataset, person: Person) -> None:
    """Write the person's identifiers into free text, other IDs, private and nested elements."""
    ds.OtherPatientIDs = person.nhs_number
    ds.PatientAddress = person.address
    ds.PatientTelephoneNumbers = person.phone
    ds.StudyDescription = f"CXR for {person.family_name} {person.nhs_number}"
    ds.ImageComments = f"Patient {person.dicom_name} born {ds.PatientBirthDate}"
    ds.add_new(0x00091010, "LO", f"{person.family_name} {person.hospital_number}")  # private
    ds.private_block(0x0011, "SYNTHETIC PACS", create=True).add_new(0x01, "LO", person.nhs_number)
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = original_uid(person, 9, 9, 9)
    item.PatientName = person.dicom_name
    inner = Dataset()
    inner.PatientID = person.hospital_number
    inner.CodeMeaning = person.family_name
    item.PurposeOfReferenceCodeSequence = [inner]
    ds.ReferencedImageSequence = [item]
    ds.RequestAttributesSequence = [Dataset()]
    ds.RequestAttributesSequence[0].RequestedProcedureID = person.hospital_number
    ds.RequestAttributesSequence[0].ScheduledProcedureStepDescription = person.family_name


def to_bytes(ds: Dataset) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def fresh_uid() -> str:
    return generate_uid()
