"""Specific Character Set says how the file's text is encoded: it is not a data value. A
misspelling pydicom reads as a defined term (``ISO-IR 144`` for ``ISO_IR 144``) is written as
that term, so the stored file declares the character set its text is in, and kept text
(a Cyrillic manufacturer) comes out as it came in, in the file, the catalogue and the header
JSON alike. Both paths (the engine's and the intake's element by element)."""

from __future__ import annotations

import json
import warnings
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes

CHARSET, MANUFACTURER = 0x00080005, 0x00080070
CASES = [  # (as sent, as written, Python codec of the text, text)
    ("ISO-IR 144", "ISO_IR 144", "iso8859_5", "Рентген Аппарат"),
    ("ISO-IR 126", "ISO_IR 126", "iso8859_7", "Ακτινογραφία"),
    ("ISO-IR 192", "ISO_IR 192", "utf-8", "超声 診断装置"),
    ("ISO-IR 100", "ISO_IR 100", "latin-1", "Röntgen Gerät"),
    ("ISO 2022-IR 100", "ISO 2022 IR 100", "latin-1", "Röntgen Gerät"),
    ("ISO_IR 144", "ISO_IR 144", "iso8859_5", "Рентген Аппарат"),  # spelt right: untouched
]


def _raw(ds: Dataset, tag: int, vr: str, value: bytes) -> None:
    value += b" " * (len(value) % 2)
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _file(person, charset: str, encoded: bytes) -> bytes:
    ds = synthetic_instance(person, plant=False)
    _raw(ds, CHARSET, "CS", charset.encode())
    _raw(ds, MANUFACTURER, "LO", encoded)
    return to_bytes(ds)


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
@pytest.mark.parametrize(("sent", "written", "codec", "text"), CASES)
def test_a_misspelled_character_set_is_written_as_the_term_its_text_is_in(
        kr, person, profile, sent, written, codec, text):
    deid = Deidentifier(kr, profile)
    data = _file(person, sent, text.encode(codec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's "Incorrect value for Specific Character Set"
        out, _ = deid.deidentify_bytes(data, pseudonym="NCCID-A")
        for _ in range(2):  # the second time from the intake's memo
            parts, _, meta, header = deidentify_by_element(deid, data, parse_header(data), "NCCID-A")
            assert b"".join(parts) == out
            assert meta.manufacturer == text
            assert json.loads(header)[f"{MANUFACTURER:08X}"]["Value"] == [text]
        back = dcmread(BytesIO(out))
        assert back.SpecificCharacterSet == written
        assert back.get_item(MANUFACTURER).value.rstrip(b" ") == text.encode(codec)
        assert back.Manufacturer == text
        assert not [f for f in Checker().check_dataset(dcmread(BytesIO(data)))
                    if f.tag == "(0008,0005)"]


def test_a_character_set_that_is_no_character_set_is_emptied_and_reported(kr, person):
    data = _file(person, "Smith, John", b"Acme Medical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's "Unknown encoding"
        out, _ = Deidentifier(kr).deidentify_bytes(data, pseudonym="NCCID-A")
        back = dcmread(BytesIO(out))
        assert back.SpecificCharacterSet == "" and back.Manufacturer == "Acme Medical"
        assert b"Smith" not in out
        found = [f for f in Checker().check_dataset(dcmread(BytesIO(data))) if f.tag == "(0008,0005)"]
    assert len(found) == 1 and "Smith" not in found[0].masked
