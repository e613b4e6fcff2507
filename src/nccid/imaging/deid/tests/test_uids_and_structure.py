"""Keyed UIDs, nested references, private tags, overlays/curves, free text and the markers."""

from __future__ import annotations

from pydicom.dataset import Dataset

from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier, SafePrivate, image_meta
from nccid.synthetic.dicom import original_uid, synthetic_instance


def test_uids_are_deterministic_across_calls_and_keyrings_with_the_same_key(kr, person):
    first = Deidentifier(kr).deidentify(synthetic_instance(person), pseudonym="NCCID-A").dataset
    again = Deidentifier(Keyring(bytes(range(32)))).deidentify(
        synthetic_instance(person), pseudonym="NCCID-A").dataset
    other_key = Deidentifier(Keyring(b"\x09" * 32)).deidentify(
        synthetic_instance(person), pseudonym="NCCID-A").dataset
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert first[keyword].value == again[keyword].value
        assert first[keyword].value != other_key[keyword].value
        assert first[keyword].value.startswith("2.25.") and len(first[keyword].value) <= 64
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"  # well-known UIDs are kept


def test_references_in_nested_sequences_at_any_depth_are_remapped_consistently(deid, kr, person):
    referenced = synthetic_instance(person, instance=2)
    ds = synthetic_instance(person)
    target = referenced.SOPInstanceUID
    item = ds.ReferencedImageSequence[0]
    item.ReferencedSOPInstanceUID = target
    # Six levels deep in sequences the table keeps (K) or does not list.
    deep = ds
    for _ in range(6):
        inner = Dataset()
        inner.ReferencedSOPInstanceUID = target
        inner.PatientName = "Deep^Name"
        inner.ContentSequence = []
        deep.ReferencedSeriesSequence = [inner]
        deep = inner
    out = deid.deidentify(ds, pseudonym="NCCID-A").dataset
    mapped = deid.deidentify(referenced, pseudonym="NCCID-A").dataset.SOPInstanceUID
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == mapped
    level, depth = out, 0
    while "ReferencedSeriesSequence" in level:
        level = level.ReferencedSeriesSequence[0]
        depth += 1
        assert level.ReferencedSOPInstanceUID == mapped
        assert "PatientName" not in level or level.PatientName != "Deep^Name"
    assert depth == 6


def test_x_z_u_star_sequences_keep_only_references(deid, person):
    ds = synthetic_instance(person)
    out = deid.deidentify(ds, pseudonym="NCCID-A").dataset
    item = out.ReferencedImageSequence[0]
    assert set(item.keys()) <= {0x00081150, 0x00081155}
    assert item.ReferencedSOPInstanceUID != original_uid(person, 9, 9, 9)


def test_private_tags_are_removed_except_the_safe_list(kr, person):
    ds = synthetic_instance(person)
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "1000")       # B_value: on the safe list
    block.add_new(0x10, "LO", person.family_name)  # same creator, not on the list
    other = ds.private_block(0x0043, "NOT GE", create=True)
    other.add_new(0x39, "IS", "5")           # safe element number, wrong creator
    out = Deidentifier(kr).deidentify(ds, pseudonym="NCCID-A").dataset
    private = {int(e.tag): e.value for e in out if e.tag.is_private}
    assert private == {0x00190010: "SIEMENS MR HEADER", 0x0019100C: "1000"}

    none_safe = Deidentifier(kr, safe_private=[]).deidentify(synthetic_instance(person), pseudonym="NCCID-A")
    assert not [e for e in none_safe.dataset if e.tag.is_private]
    custom = [SafePrivate("NOT GE", 0x0043, 0x39)]
    ds = synthetic_instance(person)
    ds.private_block(0x0043, "NOT GE", create=True).add_new(0x39, "IS", "5")
    kept = Deidentifier(kr, safe_private=custom).deidentify(ds, pseudonym="NCCID-A").dataset
    assert [int(e.tag) for e in kept if e.tag.is_private] == [0x00430010, 0x00431039]


def test_overlays_and_curves_are_removed_whole(deid, person):
    ds = synthetic_instance(person)
    for group in (0x6000, 0x6002, 0x601E):
        ds.add_new((group << 16) | 0x0010, "US", 64)
        ds.add_new((group << 16) | 0x0022, "LO", person.family_name)  # Overlay Description
        ds.add_new((group << 16) | 0x3000, "OW", b"\xff\x00" * 8)
    ds.add_new(0x50000005, "US", 2)
    ds.add_new(0x50003000, "OW", b"\x00\x01")
    out = deid.deidentify(ds, pseudonym="NCCID-A").dataset
    assert not [e for e in out if 0x5000 <= e.tag.group <= 0x60FF]


def test_free_text_is_removed_unless_safe(deid, person):
    ds = synthetic_instance(person)
    ds.AdditionalPatientHistory = f"{person.family_name} lives at {person.address}"
    ds.DerivationDescription = person.family_name           # unlisted free text: removed
    ds.ManufacturerModelName = "Model S"                       # safe list: kept
    ds.add_new(0x00181030, "LO", person.family_name)           # Protocol Name
    out = deid.deidentify(ds, pseudonym="NCCID-A").dataset
    for keyword in ("AdditionalPatientHistory", "DerivationDescription", "StudyDescription",
                    "ImageComments", "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs"):
        assert keyword not in out or not out[keyword].value or out[keyword].value == "REMOVED", keyword
    assert out.ManufacturerModelName == "Model S"
    text = str(out)
    for needle in (person.family_name, person.hospital_number, person.nhs_number, person.phone):
        assert needle not in text


def test_markers_and_method_codes_are_written(kr, person):
    out = Deidentifier(kr, "retain-dates").deidentify(synthetic_instance(person), pseudonym="NCCID-A").dataset
    assert out.PatientIdentityRemoved == "YES"
    assert "retain-dates" in out.DeidentificationMethod[0]
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113106", "113108", "113111"]
    assert all(i.CodingSchemeDesignator == "DCM" for i in out.DeidentificationMethodCodeSequence)
    shifted = Deidentifier(kr, "shift-dates").deidentify(synthetic_instance(person), pseudonym="NCCID-A").dataset
    assert "113107" in [i.CodeValue for i in shifted.DeidentificationMethodCodeSequence]
    assert shifted.LongitudinalTemporalInformationModified == "MODIFIED"


def test_patient_id_and_name_become_the_pseudonym_or_placeholder(deid, person):
    result = deid.deidentify(synthetic_instance(person), pseudonym=None, placeholder_id="PENDING-1")
    assert result.dataset.PatientID == "PENDING-1" and str(result.dataset.PatientName) == "PENDING-1"
    assert result.pseudonym is None
    assert result.link.patient_id == person.hospital_number and person.nhs_number in result.link.other_ids
    assert person.hospital_number not in repr(result) and result.original_sop_uid not in repr(result)
    deid.assign_patient(result.dataset, "NCCID-B", result)
    assert result.dataset.PatientID == "NCCID-B" and result.pseudonym == "NCCID-B"


def test_image_meta_reads_the_catalogue_fields(deid, person):
    out = deid.deidentify(synthetic_instance(person, rows=32, columns=48), pseudonym="NCCID-A").dataset
    meta = image_meta(out)
    assert (meta.sop_uid, meta.modality, meta.rows, meta.columns) == (out.SOPInstanceUID, "DX", 32, 48)
    assert meta.study_date.isoformat() == "2020-04-02" and meta.pixel_spacing == "0.139\\0.139"
    assert meta.view_position == "PA" and meta.body_part == "CHEST" and meta.patient_sex == person.sex
    assert meta.transfer_syntax == "1.2.840.10008.1.2.1"


def test_synthetic_original_uids_are_valid_uids():
    """The demo and bench corpora are valid DICOM: no UID component starts with a zero, even
    for NHS numbers whose last seven digits do (here 999 010 0004)."""
    from pydicom.uid import UID

    from nccid.synthetic.people import people

    for person in people(30, seed=1, site_prefix="BN"):
        ds = synthetic_instance(person)
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                    ds.FrameOfReferenceUID, original_uid(person, 9, 9, 9)):
            assert UID(uid).is_valid, uid
