"""A standard SNOMED CT concept in a SNOMED CT code item is kept, though its number passes an
NHS/CHI check (102539006 semi-erect, CID 19; 102535000 right lateral decubitus, CID 20: the
positions of a portable chest film) or reads as a date (20721001). Since code values were
tested as free text, intake replaced them with REMOVED, 99 of pydicom's SNOMED codes in all.
A well-formed SNOMED CT identifier (Verhoeff check digit, partition) under SCT or SRT is not
tested for those shapes, at intake and by ``nccid deid check`` alike; the same digits under
another scheme, or none, and a patient's number that is no such identifier still go."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr import _concepts_dict

from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.check import Checker
from nccid.imaging.deid.identifying import (
    code_looks_identifying,
    is_snomed_ct_id,
    looks_identifying,
)
from nccid.synthetic.dicom import synthetic_instance, to_bytes

SEMI_ERECT, DECUBITUS, DATE_SHAPED = "102539006", "102535000", "20721001"
NHS_NOT_SNOMED = "9990000018"  # synthetic (999 range), no SNOMED CT identifier
NHS_AND_SNOMED = "9990011028"  # synthetic, and a well-formed SNOMED CT identifier by chance
PSEUDONYM = "NCCID-AAAAAAAAAAAAAAAA"


def _code(value: str, scheme: str | None, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodeMeaning = value, meaning
    if scheme is not None:
        item.CodingSchemeDesignator = scheme
    return item


def _film(person, scheme: str | None, values=(SEMI_ERECT, DECUBITUS, DATE_SHAPED)) -> Dataset:
    """A portable chest film's position codes, nested as a modality sends them."""
    ds = synthetic_instance(person, modality="DX", plant=False)
    orientation = _code("102538003", "SCT", "recumbent")
    orientation.PatientOrientationModifierCodeSequence = [_code(values[0], scheme, "semi-erect")]
    ds.PatientOrientationCodeSequence = [orientation]
    ds.PatientGantryRelationshipCodeSequence = [_code(values[1], scheme, "right lateral decubitus")]
    long_code = _code("X", scheme, "a code of the dictionary")
    del long_code.CodeValue
    long_code.LongCodeValue = values[2]
    ds.AnatomicRegionSequence = [long_code]
    return ds


def _values(ds: Dataset) -> list[str]:
    orientation = ds.PatientOrientationCodeSequence[0]
    return [orientation.CodeValue, orientation.PatientOrientationModifierCodeSequence[0].CodeValue,
            ds.PatientGantryRelationshipCodeSequence[0].CodeValue,
            ds.AnatomicRegionSequence[0].LongCodeValue]


def test_the_concepts_pass_the_free_text_tests_only_as_snomed_codes():
    for value in (SEMI_ERECT, DECUBITUS, DATE_SHAPED):
        assert looks_identifying(value) and is_snomed_ct_id(value)
        assert not code_looks_identifying(value, "SCT") and not code_looks_identifying(value, "SRT")
        assert code_looks_identifying(value, "99LOCAL") and code_looks_identifying(value, "")
    assert not is_snomed_ct_id(NHS_NOT_SNOMED) and code_looks_identifying(NHS_NOT_SNOMED, "SCT")
    assert is_snomed_ct_id(NHS_AND_SNOMED) and not code_looks_identifying(NHS_AND_SNOMED, "SCT")
    assert code_looks_identifying("999 001 1028", "SCT")  # spaced: no identifier
    assert code_looks_identifying("Quetzal^Jane", "SCT")


@pytest.mark.parametrize("scheme", ["SCT", "SRT"])
@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
def test_snomed_concepts_are_kept_by_intake_and_not_reported(kr, person, by_both_paths,
                                                              scheme, profile):
    deid = Deidentifier(kr, profile=profile)
    stored = dcmread(BytesIO(by_both_paths(deid, to_bytes(_film(person, scheme)), PSEUDONYM)))
    assert _values(stored) == ["102538003", SEMI_ERECT, DECUBITUS, DATE_SHAPED]
    assert Checker(profile=profile).check_dataset(stored, "x") == []


@pytest.mark.parametrize("scheme", ["99LOCAL", None])
def test_the_same_digits_of_another_scheme_or_none_are_removed(deid, person, by_both_paths, scheme):
    stored = dcmread(BytesIO(by_both_paths(deid, to_bytes(_film(person, scheme)))))
    assert _values(stored) == ["102538003", "REMOVED", "REMOVED", "REMOVED"]
    kept = _film(person, scheme)
    assert {f.keyword for f in Checker().check_dataset(kept, "x")} >= {"CodeValue", "LongCodeValue"}


def test_a_patient_number_in_a_snomed_item_goes_unless_it_is_a_snomed_identifier(
        deid, person, by_both_paths):
    film = _film(person, "SCT", (NHS_NOT_SNOMED, NHS_AND_SNOMED, "999 000 0018"))
    stored = dcmread(BytesIO(by_both_paths(deid, to_bytes(film))))
    # The limit, documented: a number that is also a well-formed SNOMED CT identifier (about
    # 1 in 330) is taken for a concept.
    assert _values(stored) == ["102538003", "REMOVED", NHS_AND_SNOMED, "REMOVED"]


def test_a_code_whose_scheme_was_removed_loses_its_concept_on_recheck(deid, person):
    """A waiting file whose scheme designator an earlier check replaced: no exemption."""
    ds = synthetic_instance(person, modality="DX", plant=False)
    deid.deidentify(ds, pseudonym=None, placeholder_id="PENDING-1")
    ds.PatientGantryRelationshipCodeSequence = [_code(DECUBITUS, "REMOVED", "right lateral decubitus"),
                                                _code(DECUBITUS, "SCT", "right lateral decubitus")]
    again = dcmread(BytesIO(deid.recheck_bytes(to_bytes(ds))))
    assert [i.CodeValue for i in again.PatientGantryRelationshipCodeSequence] == ["REMOVED", DECUBITUS]


def test_a_top_level_code_value_is_remembered_with_its_scheme(deid, person, by_both_paths):
    """Element by element, a code value met at the top level with SCT is not reused for the
    same value under another scheme (the memo's key holds the scheme's value)."""
    kept = []
    for scheme in ("SCT", "99LOCAL", None, "SCT"):
        ds = synthetic_instance(person, modality="DX", plant=False)
        ds.CodeValue = SEMI_ERECT
        if scheme is not None:
            ds.CodingSchemeDesignator = scheme
        kept.append(dcmread(BytesIO(by_both_paths(deid, to_bytes(ds)))).get("CodeValue"))
    assert kept == [SEMI_ERECT, "REMOVED", "REMOVED", SEMI_ERECT]


def test_no_snomed_code_of_pydicoms_sr_dictionary_is_removed():
    codes = {(scheme, value) for scheme in ("SCT", "SRT")
             for concepts in _concepts_dict.concepts.get(scheme, {}).values() for value in concepts}
    assert len(codes) > 5000
    assert not [code for code in codes if code_looks_identifying(code[1], code[0])]
    # What the exemption is for: as free text, 99 of them (pydicom 3.0) were dropped.
    assert sum(looks_identifying(value) for _, value in codes) > 50
