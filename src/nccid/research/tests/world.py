"""A small warehouse with both sets, built for the research tests.

Synthetic people, de-identified DICOM in the bucket layout, clinical JSON, and a catalogue of
the documented schema (Parquet + DuckDB views). Every fact is also kept as plain Python so
tests compute their expectations independently of the SQL under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydicom.uid import ExplicitVRLittleEndian

from nccid.research.source import Source
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import Person, people
from nccid.warehouse.national import national_files

FOLDER = {"DX": "xray", "CR": "xray", "CT": "ct", "MR": "mri"}
SITES = ("RTEST", "OTHER")


def pseudonym_of(person: Person) -> str:
    digest = hashlib.sha256(b"research-tests" + person.nhs_number.encode()).digest()
    return "NCCID-" + base64.b32encode(digest).decode()[:16]


def uid_of(*parts: object) -> str:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return "2.25." + str(int(digest[:30], 16))


class DirWarehouse:
    """The object-store interface (open/read/exists) over a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def open(self, key: str):
        return (self.root / key).open("rb")

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def write(self, key: str, data: bytes) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    root: Path
    persons: list[Person]
    images: list[dict] = field(default_factory=list)
    clinical: list[dict] = field(default_factory=list)
    patients: list[dict] = field(default_factory=list)

    @property
    def warehouse(self) -> DirWarehouse:
        return DirWarehouse(self.root / "warehouse")

    def source(self) -> Source:
        return Source(connect=lambda: connect(self.root / "catalogue"), warehouse=self.warehouse)

    def identifiers(self) -> list[str]:
        return [i for p in self.persons for i in p.identifiers()]

    def pseudonyms(self, set_name: str) -> set[str]:
        return {p["pseudonym"] for p in self.patients if p["set_name"] == set_name}


CLINICAL_COLUMNS = {
    "age": pa.int64(), "sex": pa.string(), "ethnicity": pa.string(),
    "date_of_positive_covid_swab": pa.date32(), "date_of_admission": pa.date32(),
    "date_of_itu_admission": pa.date32(), "date_of_intubation": pa.date32(),
    "date_of_death": pa.date32(), "itu_admission": pa.string(), "intubation": pa.string(),
    "death": pa.string(), "final_covid_status": pa.string(),
}


def _clinical(i: int, person: Person, swab: date) -> dict:
    positive = i % 3 != 2
    itu = positive and i % 2 == 0
    died = positive and i % 4 == 0
    admitted = swab + timedelta(days=i % 3)
    return {
        "age": 30 + i * 4, "sex": "Male" if person.sex == "M" else "Female",
        "ethnicity": ("White", "Asian", "Black", "Other")[i % 4],
        "date_of_positive_covid_swab": swab.isoformat() if positive else None,
        "date_of_admission": admitted.isoformat(),
        "date_of_itu_admission": (admitted + timedelta(days=2)).isoformat() if itu else None,
        "date_of_intubation": (admitted + timedelta(days=3)).isoformat() if itu else None,
        "date_of_death": (admitted + timedelta(days=10)).isoformat() if died else None,
        "itu_admission": "Yes" if itu else "No", "intubation": "Yes" if itu else "No",
        "death": "Yes" if died else "No",
        "final_covid_status": "Positive" if positive else "Negative",
    }


_CODES = {"Male": "1", "Female": "0", "Yes": "1", "No": "0", "Positive": "1", "Negative": "0"}


def _typed(cleaned: dict) -> dict:
    """The codes a site would have typed for these cleaned labels (the sheet's values)."""
    return {k: _CODES[v] for k, v in cleaned.items() if isinstance(v, str) and v in _CODES}


def _image(person: Person, pseudonym: str, modality: str, study: int, instance: int,
           when: date, mono1: bool = False):
    ds = synthetic_instance(person, modality=modality, study=study, instance=instance,
                            study_date=when, plant=False, pixel_seed=study * 100 + instance)
    sop, st, se = (uid_of(pseudonym, study, 1, instance), uid_of(pseudonym, study),
                   uid_of(pseudonym, study, 1))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = st, se
    ds.FrameOfReferenceUID = uid_of(pseudonym, study, 0)
    ds.PatientID = ds.PatientName = pseudonym
    ds.AccessionNumber = ""
    ds.InstitutionName = ds.ReferringPhysicianName = ""
    del ds.PatientBirthDate
    ds.PatientIdentityRemoved = "YES"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if modality == "CT":
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
    if mono1:
        ds.PhotometricInterpretation = "MONOCHROME1"
    return ds


def build_world(root: Path, n_people: int = 12, seed: int = 7) -> World:
    """Even-numbered people go to training, odd to validation; sites alternate in pairs."""
    root = Path(root)
    persons = people(n_people, seed=seed)
    world = World(root, persons)
    wh = world.warehouse
    for i, person in enumerate(persons):
        pseudonym = pseudonym_of(person)
        set_name = "training" if i % 2 == 0 else "validation"
        site = SITES[(i // 2) % 2]
        swab = date(2020, 3, 30) + timedelta(days=i * 5)
        cleaned = _clinical(i, person, swab)
        kind = "positive"
        wh.write(f"{set_name}/data/{pseudonym}/{kind}-{site}.json", json.dumps(cleaned).encode())
        world.clinical.append({"pseudonym": pseudonym, "site": site, "kind": kind,
                               "set_name": set_name, "cleaned": cleaned})
        plan = [("DX", 1, 1, swab + timedelta(days=1)), ("DX", 1, 2, swab + timedelta(days=1))]
        if i % 3 == 0:
            plan.append(("CT", 2, 1, swab + timedelta(days=3 if i % 2 == 0 else 20)))
        if i == 4:
            plan.append(("CT", 3, 1, swab + timedelta(days=30)))
        for modality, study, inst, when in plan:
            ds = _image(person, pseudonym, modality, study, inst, when, mono1=(i == 2 and inst == 2))
            data = to_bytes(ds)
            folder = FOLDER[modality]
            tail = f"{pseudonym}/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}"
            key = f"{set_name}/{folder}/{tail}.dcm"
            sha = wh.write(key, data)
            header = ds.to_json_dict(bulk_data_threshold=1, bulk_data_element_handler=lambda _: "")
            header.pop("7FE00010", None)
            wh.write(f"{set_name}/{folder}-metadata/{tail}.json", json.dumps(header).encode())
            world.images.append({
                "pseudonym": pseudonym, "site": site, "set_name": set_name, "modality": modality,
                "folder": folder, "study_uid": ds.StudyInstanceUID,
                "series_uid": ds.SeriesInstanceUID, "sop_uid": ds.SOPInstanceUID,
                "sop_class_uid": ds.SOPClassUID, "study_date": when, "series_date": when,
                "body_part": "CHEST", "manufacturer": "Synthetic Medical Systems",
                "model": "Model S", "rows": 64, "columns": 64, "pixel_spacing": "",
                "view_position": str(ds.get("ViewPosition", "")),
                "patient_sex": person.sex, "patient_age": cleaned["age"], "storage_key": key,
                "size": len(data), "sha256": sha, "transfer_syntax": str(ExplicitVRLittleEndian),
                "received_at": None,
            })
        mine = [im for im in world.images if im["pseudonym"] == pseudonym]
        world.patients.append({
            "pseudonym": pseudonym, "set_name": set_name,
            "covid_status": "positive" if cleaned["final_covid_status"] == "Positive" else "negative",
            "sites": [site], "age": cleaned["age"], "sex": cleaned["sex"],
            "ethnicity": cleaned["ethnicity"], "n_studies": len({m["study_uid"] for m in mine}),
            "n_images": len(mine), "has_clinical": True,
        })
    write_catalogue(world)
    return world


def add_unusual_objects(world: World) -> dict[str, str]:
    """Beside the first training patient's images: a CT without Modality (folder ``other``)
    and a Basic Text SR (no Pixel Data, so no Rows nor Columns), written and catalogued as
    intake would. Returns their storage keys by kind (``other``, ``sr``)."""
    first = next(i for i in world.images if i["set_name"] == "training")
    person = next(p for p in world.persons if pseudonym_of(p) == first["pseudonym"])
    ct = _image(person, first["pseudonym"], "CT", 9, 1, first["study_date"])
    del ct.Modality
    sr = _image(person, first["pseudonym"], "CT", 9, 2, first["study_date"])
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        sr.pop(keyword, None)
    sr.Modality, sr.SOPClassUID = "SR", "1.2.840.10008.5.1.4.1.1.88.11"
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    keys = {}
    for kind, ds, rows in (("other", ct, 64), ("sr", sr, None)):
        data = to_bytes(ds)
        tail = f"{first['pseudonym']}/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}"
        keys[kind] = key = f"training/{kind}/{tail}.dcm"
        world.images.append({
            **first, "modality": str(ds.get("Modality", "")), "folder": kind,
            "study_uid": ds.StudyInstanceUID, "series_uid": ds.SeriesInstanceUID,
            "sop_uid": ds.SOPInstanceUID, "sop_class_uid": ds.SOPClassUID, "rows": rows,
            "columns": rows, "storage_key": key, "size": len(data),
            "sha256": world.warehouse.write(key, data)})
    write_catalogue(world)
    return keys


def write_catalogue(world: World) -> None:
    out = world.root / "catalogue"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(world.images), out / "images.parquet")
    pq.write_table(pa.Table.from_pylist(world.patients), out / "patients.parquet")
    rows = []
    for rec in world.clinical:
        row = {k: rec[k] for k in ("pseudonym", "site", "kind", "set_name")}
        row["updated_at"] = None
        row["cleaned"] = json.dumps(rec["cleaned"])
        row["national"] = json.dumps(national_files(rec["kind"], rec["pseudonym"], rec["site"],
                                                    rec["cleaned"], _typed(rec["cleaned"])))
        for name in CLINICAL_COLUMNS:
            value = rec["cleaned"].get(name)
            row[name] = date.fromisoformat(value) if value and name.startswith("date_") else value
        rows.append(row)
    schema = pa.schema([("pseudonym", pa.string()), ("site", pa.string()), ("kind", pa.string()),
                        ("set_name", pa.string()), ("updated_at", pa.timestamp("us")),
                        ("cleaned", pa.string()), ("national", pa.string()), *CLINICAL_COLUMNS.items()])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "clinical.parquet")


def connect(directory: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in ("images", "patients", "clinical"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{directory / name}.parquet')")
    con.execute("CREATE VIEW studies AS SELECT pseudonym, site, set_name, modality, study_uid, "
                "min(study_date) AS study_date, count(DISTINCT series_uid) AS n_series, "
                "count(*) AS n_images, sum(size) AS bytes, min(received_at) AS first_received "
                "FROM images GROUP BY ALL")
    return con
