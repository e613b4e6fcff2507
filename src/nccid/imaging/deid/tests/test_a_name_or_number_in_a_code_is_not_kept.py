"""The attributes of a code item the profile keeps (Code Value, Long Code Value, URN Code
Value, Coding Scheme Designator/Version...) are tested at intake as kept free text is. They
were not ("codes are not free text"), so a site's free-text "code" typed at the modality (a
patient's name, an NHS number) in a Requested Procedure Code Sequence or a view's modifier
reached the stored file and its header JSON, and ``nccid deid check`` then reported it. A
value that fails gets the dummy REMOVED (a code item must keep a code value and its scheme);
ordinary codes and code meanings stay, by the engine, element by element and the recheck."""

from __future__ import annotations

import json
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes

PSEUDONYM = "NCCID-AAAAAAAAAAAAAAAA"
NAME, NUMBER = "Quetzal^Jane", "9990000018"  # synthetic: a 999-range NHS number
NEEDLES = (b"Quetzal", b"QUETZAL", NUMBER.encode(), b"999 000 0018")
ORDINARY = [("36643-5", "LN", "XR CHEST PA"), ("R-102CD", "SRT", "Posteroanterior"),
            ("CTCHESTC", "99LOCAL", "CT CHEST WITH CONTRAST"), ("MRS", "99LOCAL", "MR spectroscopy"),
            ("XRCHEST", "99LOCAL", "Chest X-ray")]


def _code(value: str, scheme: str, meaning: str, **more: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    for keyword, text in more.items():
        setattr(item, keyword, text)
    return item


def _planted(person) -> Dataset:
    """Planted codes at depth 2, 3 and 4, beside ordinary ones at each depth."""
    ds = synthetic_instance(person, modality="CR", plant=False)
    ds.RequestedProcedureCodeSequence = [  # depth 2
        _code(NUMBER, "99LOCAL", "Mrs Jane Quetzal"), *(_code(*o) for o in ORDINARY)]
    long_code = _code("X", "99LOCAL", "Left", LongCodeValue=f"{NAME} {NUMBER}")
    del long_code.CodeValue  # a code item holds one of the three code values
    urn_code = _code("X", "99LOCAL", "Right", URNCodeValue="urn:nccid:999 000 0018")
    del urn_code.CodeValue
    view = _code("R-10214", "SRT", "lateral",
                 ViewModifierCodeSequence=[_code(NAME, "99LOCAL", "planted"), long_code, urn_code,
                                           _code("R-10226", NAME, "view modifier",
                                                 CodingSchemeVersion=NUMBER),
                                           _code(*ORDINARY[1])])
    ds.ViewCodeSequence = [view]  # its modifiers at depth 3
    frame = Dataset()
    frame.FrameAnatomySequence = [Dataset()]
    frame.FrameAnatomySequence[0].FrameLaterality = "U"
    frame.FrameAnatomySequence[0].AnatomicRegionSequence = [  # depth 4
        _code(NUMBER, "99LOCAL", "Chest"), _code(*ORDINARY[0])]
    ds.SharedFunctionalGroupsSequence = [frame]
    return ds


def _codes(items) -> list[tuple[str, str, str]]:
    return [(i.get("CodeValue") or i.get("LongCodeValue") or i.get("URNCodeValue"),
             i.CodingSchemeDesignator, i.CodeMeaning) for i in items]


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_a_planted_name_or_number_in_a_code_is_stored_nowhere(kr, person, profile):
    deid = Deidentifier(kr, profile=profile)
    data = to_bytes(_planted(person))
    parts, result = deid.deidentify_parts(data, pseudonym=PSEUDONYM, header=parse_header(data))
    stored = b"".join(parts)
    for _ in range(2):  # the first time, then from the element memo
        made = deidentify_by_element(deid, data, parse_header(data), PSEUDONYM)
        assert made is not None and b"".join(made[0]) == stored and made[1].off_list == result.off_list
    for needle in NEEDLES:
        assert needle not in stored and needle not in made[3]
    ds = dcmread(BytesIO(stored))
    assert _codes(ds.RequestedProcedureCodeSequence) == [
        ("REMOVED", "99LOCAL", "REMOVED"), *ORDINARY]
    assert _codes(ds.ViewCodeSequence[0].ViewModifierCodeSequence) == [
        ("REMOVED", "99LOCAL", "planted"), ("REMOVED", "99LOCAL", "Left"),
        ("REMOVED", "99LOCAL", "Right"), ("R-10226", "REMOVED", "view modifier"), ORDINARY[1]]
    assert ds.ViewCodeSequence[0].ViewModifierCodeSequence[3].CodingSchemeVersion == "REMOVED"
    anatomy = ds.SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0]
    assert _codes(anatomy.AnatomicRegionSequence) == [("REMOVED", "99LOCAL", "Chest"), ORDINARY[0]]
    assert result.off_list[tag_for_keyword("RequestedProcedureCodeSequence")] == 2
    assert result.off_list[tag_for_keyword("ViewCodeSequence")] == 5
    assert result.off_list[tag_for_keyword("SharedFunctionalGroupsSequence")] == 1
    checker = Checker(profile=profile)
    assert checker.check_dataset(ds, "x") == []
    assert checker.check_header(made[3], "x.json") == []
    header = json.loads(made[3])
    assert header["00321064"]["Value"][1]["00080100"] == {"vr": "SH", "Value": ["36643-5"]}


def test_a_waiting_or_held_file_loses_a_planted_code_when_linked_or_released(kr, person):
    """De-identified by a release that kept it: the recheck drops it too."""
    deid = Deidentifier(kr, profile="shift-dates")
    ds = synthetic_instance(person, modality="CR", plant=False)
    deid.deidentify(ds, pseudonym=None, placeholder_id="PENDING-1")
    ds.RequestedProcedureCodeSequence = [_code(NUMBER, NAME, "Chest"), _code(*ORDINARY[0])]
    stored = to_bytes(ds)  # as an older release left it
    for out in (deid.recheck_bytes(stored), deid.assign_patient_bytes(stored, PSEUDONYM)):
        again = dcmread(BytesIO(out))
        assert _codes(again.RequestedProcedureCodeSequence) == [
            ("REMOVED", "REMOVED", "Chest"), ORDINARY[0]]
        assert not any(needle in out for needle in NEEDLES)
