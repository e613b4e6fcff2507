"""'nccid deid check' reports a DICOM file it cannot read (its path and the error's type,
never a value) and goes on to check the other files."""

from __future__ import annotations

from nccid.imaging.deid.check import check_paths
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people


def _with_corrupt_patient_id_vr(data: bytes) -> bytes:
    corrupt = bytearray(data)
    at = corrupt.find(b"\x10\x00\x20\x00LO")  # (0010,0020) Patient ID, explicit VR LO
    corrupt[at + 4:at + 6] = b"Lo"  # one corrupted VR byte: pydicom cannot convert it
    return bytes(corrupt)


def test_a_corrupt_file_is_one_finding_and_the_next_files_are_still_checked(tmp_path):
    person = people(1, seed=2)[0]
    good = to_bytes(synthetic_instance(person, plant=True))
    (tmp_path / "a_bad.dcm").write_bytes(_with_corrupt_patient_id_vr(good))
    (tmp_path / "b_planted.dcm").write_bytes(good)
    (tmp_path / "c_cut.dcm").write_bytes(good[:700])
    findings, scanned, skipped = check_paths([tmp_path])
    assert (scanned, skipped) == (3, 0)
    bad = [f for f in findings if f.file.endswith("a_bad.dcm")]
    assert [f.reason for f in bad] == ["unreadable DICOM, not checked (NotImplementedError)"]
    assert any(f.file.endswith("b_planted.dcm") and f.keyword == "PatientName" for f in findings)
    assert all(person.nhs_number not in f.masked + f.reason for f in findings)
