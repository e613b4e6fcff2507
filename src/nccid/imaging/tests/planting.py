"""Plant a person's identifiers in every attribute the de-identification profile acts on."""

from __future__ import annotations

import json
from importlib import resources

from pydicom.dataset import Dataset

from nccid.synthetic.dicom import ORIGINAL_ROOT
from nccid.synthetic.people import Person

TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC"}
# The instance's own UIDs stay the synthetic file's (already original UIDs, scanned for).
OWN_UIDS = {0x00080018, 0x0020000D, 0x0020000E, 0x00200052}


def profile_rows() -> list[dict]:
    text = resources.files("nccid.imaging.deid").joinpath("data/profile_e1_1.json").read_text()
    return json.loads(text)["attributes"]


def planted_uid(person: Person, n: int) -> str:
    return f"{ORIGINAL_ROOT}{person.nhs_number[3:]}.77.{n}"


def plant_everywhere(ds: Dataset, person: Person, profile: str = "retain-dates", *,
                     where_kept: bool = True) -> list[str]:
    """Write an identifier into each profile attribute (text, UID or sequence) the profile
    does not keep by design, and (``where_kept``) where elements are kept but their values
    must not be; returns the extra needles (UIDs) planted. Dates, numbers and code strings
    cannot hold a name and are left as the synthetic file has them."""
    from nccid.imaging.deid.profile import compile_profile

    compiled = compile_profile(profile)
    needles = []
    for n, row in enumerate(profile_rows()):
        tag_text = row["tag"].strip("()").replace(",", "")
        if row.get("private") or "X" in tag_text.upper():
            continue
        tag = int(tag_text, 16)
        if tag >> 16 in (0x0000, 0x0002) or tag in OWN_UIDS or compiled.action(tag) == "K":
            continue
        vr = row.get("vr", "")
        if vr in TEXT_VRS:
            value = person.dicom_name if vr == "PN" else person.family_name
            ds.add_new(tag, vr, value)
        elif vr == "UI":
            ds.add_new(tag, vr, planted_uid(person, n))
            needles.append(planted_uid(person, n))
        elif vr == "SQ":
            item, inner = Dataset(), Dataset()
            item.PatientName = person.dicom_name
            inner.ReferencedSOPInstanceUID = planted_uid(person, 10_000 + n)
            inner.PatientID = person.hospital_number
            item.ReferencedImageSequence = [inner]
            ds.add_new(tag, vr, [item])
            needles.append(planted_uid(person, 10_000 + n))
    # Overlays and curves, and a private sequence deep inside a public one.
    ds.add_new(0x60000022, "LO", person.family_name)  # Overlay Description
    ds.add_new(0x50000022, "LO", person.family_name)  # Curve Description (retired)
    block = ds.private_block(0x0013, "HOSTILE PACS", create=True)
    deep = Dataset()
    deep.add_new(0x00100020, "LO", person.nhs_number)
    block.add_new(0x10, "SQ", [deep])
    if where_kept:
        needles += plant_kept_private(ds, person) + plant_kept_public(ds, person)
    return needles


def plant_kept_private(ds: Dataset, person: Person) -> list[str]:
    """A sequence and text under tags of the private safe list (kept only when numeric)."""
    hidden_uid = planted_uid(person, 20_000)
    safe = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    item = Dataset()
    item.PatientName, item.PatientID = person.dicom_name, person.hospital_number
    item.ReferencedSOPInstanceUID = hidden_uid
    safe.add_new(0x0C, "SQ", [item])                       # B_value (IS) on the safe list
    safe.add_new(0x0D, "LO", person.family_name)           # declared CS
    return [hidden_uid]


def plant_kept_public(ds: Dataset, person: Person) -> list[str]:
    """Public attributes the table does not list, or keeps, holding identifiers: a retrieve
    URL, a retired order number, an alternative-calendar birth date, a date with a name."""
    ds.RetrieveURL = f"https://pacs.example/wado?studyUID={planted_uid(person, 20_001)}"
    ds.PlacerOrderNumberProcedure = person.hospital_number
    ds.PatientBirthDateInAlternativeCalendar = person.family_name
    ds.ContentDate = "20200403" + person.family_name[:8]
    return [planted_uid(person, 20_001)]
