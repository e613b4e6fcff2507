"""Teaching collections: data managers mark training studies; the export works offline."""

from __future__ import annotations

import re

import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from nccid.accounts.models import AuditEvent
from nccid.research.cohort import ScopeError
from nccid.research.teaching import TeachingError, add_case, export_collection, list_collections
from nccid.synthetic.dicom import to_bytes
from nccid.synthetic.leakscan import find_leaks

from .world import build_world, uid_of


def training_studies(world):
    seen = {}
    for image in world.images:
        if image["set_name"] == "training":
            seen.setdefault(image["study_uid"], image)
    return list(seen.values())


def test_mark_cases_and_export_with_index_and_thumbnails(world, data_manager, tmp_path):
    studies = training_studies(world)[:3]
    for n, study in enumerate(studies):
        add_case(data_manager, "Classic COVID CXR", study["pseudonym"], study["study_uid"],
                 note=f"Bilateral <b>changes</b> {n}", description="For registrars",
                 source=world.source())
    [coll] = list_collections()
    assert coll.cases.count() == 3 and coll.created_by == data_manager

    out = export_collection(data_manager, "Classic COVID CXR", tmp_path / "teach", world.source())
    index = (out / "index.html").read_text()
    thumbs = re.findall(r'<img src="([^"]+)"', index)
    assert len(thumbs) == 3
    for thumb in thumbs:
        with Image.open(out / thumb) as image:
            assert image.format == "PNG" and max(image.size) <= 256
    assert "&lt;b&gt;changes&lt;/b&gt;" in index  # notes are escaped
    links = re.findall(r'<a href="([^"]+\.dcm)"', index)
    expected = sum(1 for i in world.images if i["study_uid"] in {s["study_uid"] for s in studies})
    assert len(links) == expected
    uids = {s["study_uid"] for s in studies} | {i["sop_uid"] for i in world.images}
    for link in links:
        ds = pydicom.dcmread(out / link)
        assert re.fullmatch(r"CASE00\d", str(ds.PatientID)) and ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID not in uids and ds.SOPInstanceUID not in uids
    # Neither identifiers nor the research pseudonyms reach the teaching material.
    assert find_leaks([out], world.identifiers() + [s["pseudonym"] for s in studies]) == []
    assert AuditEvent.objects.filter(action="research.teaching.add").count() == 3
    assert AuditEvent.objects.get(action="research.teaching.export").detail["cases"] == 3


def test_only_training_studies_only_data_managers_and_notes_without_identifiers(world, data_manager, researcher):
    validation = next(i for i in world.images if i["set_name"] == "validation")
    with pytest.raises(TeachingError, match="training set"):
        add_case(data_manager, "C", validation["pseudonym"], validation["study_uid"],
                 source=world.source())
    study = training_studies(world)[0]
    with pytest.raises(ScopeError):
        add_case(researcher, "C", study["pseudonym"], study["study_uid"], source=world.source())
    for note in ("Mr Bloggs, DOB 10/01/1950", "hosp no RX42000001", "NHS 999 000 0018"):
        with pytest.raises(TeachingError, match="the note must not contain") as refused:
            add_case(data_manager, "C", study["pseudonym"], study["study_uid"], note=note,
                     source=world.source())
        assert not any(part in str(refused.value) for part in ("10/01", "RX42", "999 000"))
    add_case(data_manager, "C", study["pseudonym"], study["study_uid"], source=world.source())
    with pytest.raises(TeachingError, match="already a case"):
        add_case(data_manager, "C", study["pseudonym"], study["study_uid"], source=world.source())


def _rewrite(world, image, change):
    """Give a warehouse object extra elements (the catalogue's checksum is not read here)."""
    ds = pydicom.dcmread(world.warehouse.open(image["storage_key"]))
    change(ds)
    world.warehouse.write(image["storage_key"], to_bytes(ds))


def test_export_leaves_no_catalogue_uid_in_nested_references(tmp_path, data_manager):
    world = build_world(tmp_path / "w", n_people=2)
    mine = [i for i in world.images if i["set_name"] == "training"]
    [ct] = [i for i in mine if i["modality"] == "CT"]
    dx_first, dx_second = sorted((i for i in mine if i["modality"] == "DX"), key=lambda i: i["sop_uid"])

    def references_across_studies(ds):
        ds.IrradiationEventUID = uid_of(ct["pseudonym"], "irradiation")
        ds.ReferencedImageSequence = [Dataset()]
        ds.ReferencedImageSequence[0].ReferencedSOPClassUID = dx_first["sop_class_uid"]
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = dx_first["sop_uid"]
        ds.ReferencedStudySequence = [Dataset()]
        ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = dx_first["study_uid"]

    def references_within_study(ds):
        ds.SourceImageSequence = [Dataset()]
        ds.SourceImageSequence[0].ReferencedSOPClassUID = dx_second["sop_class_uid"]
        ds.SourceImageSequence[0].ReferencedSOPInstanceUID = dx_second["sop_uid"]

    _rewrite(world, ct, references_across_studies)
    _rewrite(world, dx_first, references_within_study)
    for study in (ct, dx_first):
        add_case(data_manager, "Nested", study["pseudonym"], study["study_uid"], source=world.source())
    out = export_collection(data_manager, "Nested", tmp_path / "teach", world.source())

    catalogue = {i[k] for i in world.images for k in ("study_uid", "series_uid", "sop_uid")}
    keyed = catalogue | {uid_of(ct["pseudonym"], "irradiation")}
    exported = {}
    for path in sorted(out.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        exported[path] = ds
        found = set()
        ds.walk(lambda _, e, found=found: found.add(str(e.value)) if e.VR == "UI" else None)
        assert not found & keyed, path
        assert not [u for u in keyed if u.encode() in path.read_bytes()]
    assert not [u for u in keyed if u in (out / "index.html").read_text()]
    # Inside the DX case, the source reference names the exported second image.
    by_sop = {str(ds.SOPInstanceUID): ds for ds in exported.values()}
    [citing] = [ds for ds in exported.values() if "SourceImageSequence" in ds]
    cited = citing.SourceImageSequence[0]
    assert str(cited.ReferencedSOPInstanceUID) in by_sop
    assert cited.ReferencedSOPClassUID == dx_second["sop_class_uid"]  # a well-known UID stays
    [ct_out] = [ds for ds in exported.values() if ds.Modality == "CT"]
    assert ct_out.IrradiationEventUID and str(ct_out.IrradiationEventUID) not in keyed


def test_export_leaves_no_pseudonym_in_nested_patient_elements(tmp_path, data_manager):
    world = build_world(tmp_path / "w", n_people=2)
    [ct] = [i for i in world.images if i["set_name"] == "training" and i["modality"] == "CT"]
    pseudonym = ct["pseudonym"]

    def pseudonym_at_depth(ds):
        request = Dataset()
        request.PatientID = request.PatientName = pseudonym
        request.IssuerOfPatientID = "NCCID"
        request.AccessionNumber = "ACC1"
        source = Dataset()
        source.PatientID = pseudonym
        source.OtherPatientIDsSequence = [Dataset()]
        source.OtherPatientIDsSequence[0].PatientID = pseudonym
        request.SourcePatientGroupIdentificationSequence = [source]
        ds.RequestAttributesSequence = [request]
        ds.DerivationDescription = f"derived for {pseudonym}"

    _rewrite(world, ct, pseudonym_at_depth)
    add_case(data_manager, "Nested IDs", pseudonym, ct["study_uid"], source=world.source())
    out = export_collection(data_manager, "Nested IDs", tmp_path / "teach", world.source())

    [path] = list(out.rglob("*.dcm"))
    assert pseudonym.encode() not in path.read_bytes()
    ds = pydicom.dcmread(path)
    [request] = ds.RequestAttributesSequence
    assert request.PatientID == "CASE001" and str(request.PatientName) == "CASE001"
    assert "AccessionNumber" not in request and "IssuerOfPatientID" not in request
    [source] = request.SourcePatientGroupIdentificationSequence
    assert source.PatientID == "CASE001" and "OtherPatientIDsSequence" not in source
    assert ds.DerivationDescription == "derived for CASE001"
