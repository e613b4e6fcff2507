"""Fixtures of the warehouse tests: a fresh warehouse per test, on a local folder or real S3."""

from __future__ import annotations

from datetime import date

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from nccid.config import reset_settings_cache
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.meta import ImageMeta


def _use_storage(monkeypatch, url: str, env: dict | None = None) -> None:
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STORAGE_URL", url)
    reset_settings_cache()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request, tmp_path, monkeypatch):
    """The installation's warehouse on a fresh local folder, then on a fresh bucket of real S3."""
    if request.param == "local":
        _use_storage(monkeypatch, str(tmp_path / "warehouse"))
    else:
        server = request.getfixturevalue("s3_server")
        _use_storage(monkeypatch, f"s3://{server.make_bucket('wh')}/nccid", server.env)
    from nccid.warehouse.service import get_warehouse

    warehouse = get_warehouse()
    warehouse.ensure()
    yield warehouse
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def local_warehouse(tmp_path, monkeypatch):
    """The installation's warehouse on a fresh local folder only."""
    _use_storage(monkeypatch, str(tmp_path / "warehouse"))
    from nccid.warehouse.service import get_warehouse

    warehouse = get_warehouse()
    warehouse.ensure()
    yield warehouse
    monkeypatch.undo()
    reset_settings_cache()


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
