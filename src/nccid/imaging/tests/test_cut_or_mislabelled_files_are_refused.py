"""A file cut anywhere inside an element, or an image cut anywhere before its last pixel, is
refused as truncated (pydicom drops a last element whose header is cut, and a file that ends
before Rows was stored without pixel data); compressed pixel data is refused under an
uncompressed transfer syntax, whether the file names it (a mislabelled Part 10 file) or it is
guessed for a bare dataset whose icon's uncompressed pixels come first."""

from __future__ import annotations

import contextlib
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRSpectroscopyStorage

from nccid.imaging.intake import UNREADABLE_STUDY, Rejected, ingest, ingest_many, read_header
from nccid.imaging.models import StudyReceipt
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SYNTAXES = pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                                   ids=["explicit", "implicit"])


def _dataset_start(data: bytes) -> int:
    return 144 + int.from_bytes(data[140:144], "little")


def _ends_of_elements(data: bytes) -> set[int]:
    """Where each top-level element ends, as pydicom reads them (the dataset's start too)."""
    ds = dcmread(BytesIO(data))
    ends = {_dataset_start(data)}
    for elem in ds._dict.values():
        value = elem.value or b""
        ends.add(elem.value_tell + (len(value) + 8 if elem.length == 0xFFFFFFFF else elem.length))
    return ends


@SYNTAXES
def test_an_image_cut_anywhere_before_its_last_pixel_is_refused(person_factory, syntax):
    ds = synthetic_instance(person_factory(91), modality="CT", rows=4, columns=4)
    ds.file_meta.TransferSyntaxUID = syntax
    data = to_bytes(ds)
    read_header(data)  # whole, it is taken
    taken = []
    for cut in range(_dataset_start(data), len(data)):
        with contextlib.suppress(Rejected):
            read_header(data[:cut])
            taken.append(cut)
    assert taken == []


@SYNTAXES
def test_a_file_without_pixels_cut_inside_an_element_is_refused(person_factory, syntax):
    """A structured report has no pixel data: cut between two elements it is a shorter
    valid file; cut inside one (its header or its value), it is refused."""
    ds = synthetic_instance(person_factory(92))
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        ds.pop(keyword, None)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.TransferSyntaxUID = syntax
    data = to_bytes(ds)
    read_header(data)
    ends = _ends_of_elements(data)
    refused = 0
    for cut in sorted(set(range(_dataset_start(data), len(data))) - ends):
        with pytest.raises(Rejected):
            read_header(data[:cut])
        refused += 1
    assert refused > 100


def _report(person, syntax: str) -> bytes:
    ds = synthetic_instance(person)
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        ds.pop(keyword, None)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.TransferSyntaxUID = syntax
    return to_bytes(ds)


@SYNTAXES
@pytest.mark.parametrize("zeros", [1, 2, 4, 7, 12])
def test_zero_bytes_after_the_last_element_are_padding_not_a_cut(person_factory, syntax, zeros):
    """Some writers pad a file with zeros; pydicom reads past them (the walk reads implicit
    zeros as empty (0000,0000) elements, eight bytes at a time)."""
    data = _report(person_factory(95), syntax)
    if syntax == ExplicitVRLittleEndian and zeros >= 8:
        zeros = 7  # (eight zeros there are no element at all: pydicom's to judge)
    read_header(data + bytes(zeros))


def _image(person, syntax: str) -> bytes:
    ds = synthetic_instance(person, modality="CT", rows=4, columns=4)
    ds.file_meta.TransferSyntaxUID = syntax
    return to_bytes(ds)


@SYNTAXES
@pytest.mark.parametrize("error", [-18, -2, 8, 34])
@pytest.mark.parametrize("kind", [_report, _image], ids=["report", "image"])
def test_a_wrong_file_meta_group_length_is_read_past_as_pydicom_does(person_factory, syntax,
                                                                    error, kind):
    """Real files carry a wrong (0002,0000) (a private meta element left out of it): the
    dataset starts where group 0002 ends, not where the length says."""
    data = kind(person_factory(96), syntax)
    length = int.from_bytes(data[140:144], "little")
    read_header(data[:140] + (length + error).to_bytes(4, "little") + data[144:])


def test_mr_spectroscopy_has_rows_and_no_pixel_data(person_factory):
    """Its Rows and Columns are its spectroscopy data's: not taken for a cut image."""
    ds = synthetic_instance(person_factory(93), modality="MR", rows=4, columns=4)
    del ds.PixelData, ds.PhotometricInterpretation
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRSpectroscopyStorage
    read_header(to_bytes(ds))


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_ct_image_cut_before_rows_is_refused_and_counted(site, person_factory):
    person = person_factory(94)
    ds = synthetic_instance(person, modality="CT", patient_id=person.nhs_number)
    data = to_bytes(ds)
    outcome = ingest(data[:data.index(b"\x28\x00\x10\x00")], site, "test")  # before Rows
    assert outcome.status is IngestStatus.REJECTED
    assert outcome.reason.startswith("truncated: the header describes an image")
    assert StudyReceipt.objects.get(site=site).rejected == 1


@SYNTAXES
@pytest.mark.django_db(databases=["default", "vault"])
def test_a_file_refused_as_cut_counts_on_its_studys_row(site, keyring, person_factory, syntax):
    """Refused before its header is parsed, its Study Instance UID is read from its bytes: the
    site sees the refusal on its study's row (it went under "no readable Study Instance UID");
    a file cut before that UID still goes there."""
    person = person_factory(96)
    ds, other = (synthetic_instance(person, modality="CT", patient_id=person.nhs_number,
                                    plant=False, instance=n) for n in (1, 2))
    ds.file_meta.TransferSyntaxUID = other.file_meta.TransferSyntaxUID = syntax
    cut_pixels = to_bytes(ds)[:-10]
    data = to_bytes(other)
    cut_study = data[:data.index(b"\x20\x00\x0d\x00") + 4]
    outcomes = ingest_many([cut_pixels, cut_study], site, "import")
    assert [o.status for o in outcomes] == [IngestStatus.REJECTED] * 2
    assert outcomes[0].reason.startswith("truncated: the pixel data declares")
    rows = {r.study_uid: (r.rejected, r.problem) for r in StudyReceipt.objects.filter(site=site)}
    assert rows == {keyring.uid(str(ds.StudyInstanceUID)): (1, outcomes[0].reason),
                    UNREADABLE_STUDY.study_uid: (1, outcomes[1].reason)}


def _bare_jpeg_with_icon(person) -> bytes:
    """A JPEG image without file meta whose Icon Image Sequence (uncompressed, 2 × 2) comes
    before its Pixel Data."""
    ds = dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    ds.PatientID = person.nhs_number
    icon = Dataset()
    icon.Rows = icon.Columns = 2
    icon.SamplesPerPixel, icon.PhotometricInterpretation = 1, "MONOCHROME2"
    icon.BitsAllocated = icon.BitsStored = 8
    icon.HighBit, icon.PixelRepresentation, icon.PixelData = 7, 0, b"\x01\x02\x03\x04"
    ds.IconImageSequence = [icon]
    bare = Dataset()
    bare.update(ds)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, bare)
    return buffer.getvalue()


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_bare_dataset_whose_icon_comes_before_its_compressed_pixels_is_refused(site,
                                                                                person_factory):
    data = _bare_jpeg_with_icon(person_factory(95))
    assert data.index(b"\xe0\x7f\x10\x00OB\x00\x00\x04\x00") < data.rindex(b"\xe0\x7f\x10\x00")
    outcome = ingest(data, site, "test")
    assert outcome.status is IngestStatus.REJECTED
    assert "without file meta whose pixel data is compressed" in outcome.reason


@pytest.mark.django_db(databases=["default", "vault"])
def test_compressed_pixels_under_an_uncompressed_transfer_syntax_are_refused(site,
                                                                           person_factory):
    person = person_factory(96)
    ds = dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.PatientID = person.nhs_number
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    rle, explicit = b"1.2.840.10008.1.2.5\x00", b"1.2.840.10008.1.2.1\x00"  # (same length)
    meta_end = _dataset_start(buffer.getvalue())
    data = buffer.getvalue()[:meta_end].replace(rle, explicit) + buffer.getvalue()[meta_end:]
    assert dcmread(BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID == \
        ExplicitVRLittleEndian
    outcome = ingest(data, site, "test")
    assert outcome.status is IngestStatus.REJECTED
    assert outcome.reason.startswith("compressed (encapsulated) pixel data under an "
                                     "uncompressed transfer syntax")
