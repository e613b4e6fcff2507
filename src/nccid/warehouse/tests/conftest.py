"""Fixtures of the warehouse tests (the fresh warehouses, ``backend`` and ``local_warehouse``, are
in the root conftest: other parts use them too)."""

from __future__ import annotations

from datetime import date

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.meta import ImageMeta


@pytest.fixture
def make_image(keyring):
    """make_image(person_index, modality="DX", study=1, series=1, instance=1) ->
    (pseudonym, de-identified bytes, ImageMeta), like imaging intake hands them over."""
    persons = people(50, seed=7)

    def make(index: int = 0, modality: str = "DX", study: int = 1, series: int = 1,
             instance: int = 1, study_date: date = date(2020, 4, 2)):
        person = persons[index]
        pseudonym = keyring.pseudonym(person.nhs_number)
        ds = synthetic_instance(person, modality=modality, study=study, series=series,
                                instance=instance, rows=16, columns=16, plant=False,
                                study_date=study_date)
        for name in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
            setattr(ds, name, keyring.uid(getattr(ds, name)))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = ds.PatientName = pseudonym
        del ds.PatientBirthDate
        for name in ("AccessionNumber", "InstitutionName", "ReferringPhysicianName"):
            delattr(ds, name)
        meta = ImageMeta(
            sop_uid=ds.SOPInstanceUID, study_uid=ds.StudyInstanceUID,
            series_uid=ds.SeriesInstanceUID, sop_class_uid=ds.SOPClassUID, modality=modality,
            transfer_syntax=ExplicitVRLittleEndian, study_date=study_date,
            series_date=study_date, body_part="CHEST", manufacturer=ds.Manufacturer,
            model=ds.ManufacturerModelName, rows=ds.Rows, columns=ds.Columns,
            pixel_spacing="0.5\\0.5", view_position=ds.get("ViewPosition", ""),
            patient_sex=ds.PatientSex, patient_age=ds.PatientAge,
        )
        return pseudonym, to_bytes(ds), meta

    return make


def make_the_next_commit_fail(monkeypatch) -> None:
    """The warehouse service's next outermost transaction runs its block without error, then
    its COMMIT fails (a connection lost at that moment); nested ones are left alone."""
    from django.db import OperationalError, transaction

    real_atomic = transaction.atomic

    class CommitFails:
        def __init__(self, *args, **kwargs):
            self.inner = real_atomic(*args, **kwargs)

        def __enter__(self):
            return self.inner.__enter__()

        def __exit__(self, *exc):
            if exc[0] is not None:
                return self.inner.__exit__(*exc)
            self.inner.__exit__(OperationalError, OperationalError("commit failed"), None)
            raise OperationalError("could not commit: connection lost")

    def outer_commit_fails(*args, **kwargs):
        monkeypatch.setattr("nccid.warehouse.service.transaction.atomic", real_atomic)
        return CommitFails(*args, **kwargs)

    monkeypatch.setattr("nccid.warehouse.service.transaction.atomic", outer_commit_fails)
