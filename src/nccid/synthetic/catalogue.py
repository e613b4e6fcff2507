"""A synthetic catalogue at scale (same files and schema as the warehouse's), for benchmarks of
the summary page and of cohort queries. Vectorised with numpy/pyarrow: 1M images in seconds.

Pseudonyms, UIDs and values are invented; no person, real or synthetic, stands behind them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nccid.warehouse import catalogue_schema as cs

MODALITIES = np.array(["DX", "CR", "CT", "MR"])
MODALITY_SHARE = [0.62, 0.08, 0.25, 0.05]
FOLDERS = {"DX": "xray", "CR": "xray", "CT": "ct", "MR": "mri"}
IMAGES_PER_STUDY = {"DX": 1.3, "CR": 1.2, "CT": 40.0, "MR": 25.0}  # mean, for the study mix
SEXES = np.array(["Male", "Female", "Unknown"])
ETHNICITIES = np.array(["White", "Mixed/Multiple", "Asian", "Black", "Other", "Unknown"])
B32 = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
EPOCH = date(2020, 3, 1)


def _pseudonyms(rng: np.random.Generator, count: int) -> pa.Array:
    letters = B32[rng.integers(0, 32, size=(count, 16))]
    return pa.array(np.char.add("NCCID-", letters.view("<U16").ravel()))


def _strings(values: np.ndarray, prefix: str = "") -> pa.Array:
    text = pc.cast(pa.array(values), pa.string())
    return pc.binary_join_element_wise(prefix, text, "") if prefix else text


def _hex_digests(rng: np.random.Generator, count: int) -> pa.Array:
    """``count`` random 64-character hex strings (stand-ins for SHA-256 digests)."""
    text = np.frombuffer(rng.bytes(32 * count).hex().encode("ascii"), dtype="S64")
    return pc.cast(pa.array(text, pa.binary()), pa.string())


def _take(dictionary: np.ndarray | pa.Array, indices: np.ndarray) -> pa.Array:
    return pc.take(pa.array(dictionary), pa.array(indices))


def make_catalogue(directory: str | Path, images: int = 1_000_000, patients: int = 100_000,
                   seed: int = 1, sites: int = 24) -> dict:
    """Write a catalogue directory (``state.json`` + Parquet); returns its row counts.

    Open it with ``nccid.warehouse.catalogue.connect_catalogue(directory=...)``.
    """
    if images < 1 or patients < 1:
        raise ValueError("a synthetic catalogue needs at least one image and one patient")
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)

    people = _patients(rng, patients, sites)
    images_table = _images(rng, images, people)
    clinical_base = _clinical(rng, people)

    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    con.register("images", images_table)
    clinical = cs.flatten_clinical(con, clinical_base)
    con.register("clinical", clinical)
    con.register("patient_sets", pa.table({"pseudonym": people["pseudonym"],
                                           "set_name": people["set_name"]}))
    tables = {"images": images_table, "clinical": clinical, **cs.derive_tables(con)}
    con.close()

    state = cs.empty_state()
    state.update(version=1, synthetic={"images": images, "patients": patients, "seed": seed},
                 updated_at=datetime.now(UTC).isoformat(timespec="seconds"))
    for view, table in tables.items():
        relative = "images/part-000001.parquet" if view == "images" else f"{view}-v000001.parquet"
        data = cs.parquet_bytes(table)
        (directory / relative).write_bytes(data)
        state["files"][view] = [{"key": relative, "rows": table.num_rows,
                                 "sha256": hashlib.sha256(data).hexdigest()}]
    state["image_parts"] = {"1": state["files"]["images"][0]}
    state["counts"] = {view: tables[view].num_rows for view in cs.VIEWS}
    (directory / cs.STATE_FILE).write_text(json.dumps(state, indent=1))
    return dict(state["counts"])


def _patients(rng: np.random.Generator, count: int, sites: int) -> dict:
    site_codes = np.array([f"R{n:03d}" for n in range(sites)])
    return {
        "pseudonym": _pseudonyms(rng, count),
        "site_index": rng.integers(0, sites, size=count),
        "site_codes": site_codes,
        "set_name": _take(np.array(["training", "validation"]), (rng.random(count) < 0.2).astype(int)),
        "sex": rng.choice(3, size=count, p=[0.52, 0.46, 0.02]),
        "age": np.clip(rng.normal(62, 18, size=count), 18, 104).astype(np.int32),
        "ethnicity": rng.choice(6, size=count, p=[0.72, 0.04, 0.1, 0.06, 0.04, 0.04]),
        "positive": rng.random(count) < 0.6,
    }


def _images(rng: np.random.Generator, count: int, people: dict) -> pa.Table:
    n_patients = len(people["pseudonym"])
    # Studies: modality mix, a patient each (85% of patients have images), a date.
    mean_per_study = float(np.dot(MODALITY_SHARE, [IMAGES_PER_STUDY[m] for m in MODALITIES]))
    n_studies = max(1, min(count, int(count / mean_per_study)))
    study_modality = rng.choice(len(MODALITIES), size=n_studies, p=MODALITY_SHARE)
    study_patient = rng.integers(0, max(1, int(n_patients * 0.85)), size=n_studies)
    study_day = rng.integers(0, 480, size=n_studies)
    # Images: each study gets at least one, the rest by the modality's weight.
    weights = np.array([IMAGES_PER_STUDY[m] for m in MODALITIES])[study_modality]
    extra = rng.choice(n_studies, size=count - n_studies, p=weights / weights.sum())
    image_study = np.sort(np.concatenate([np.arange(n_studies), extra]))
    series = rng.integers(1, 4, size=count)

    patient = study_patient[image_study]
    modality = study_modality[image_study]
    modality_text = _take(MODALITIES, modality)
    folder = _take(np.array([FOLDERS[m] for m in MODALITIES]), modality)
    pseudonym = pc.take(people["pseudonym"], pa.array(patient))
    set_name = pc.take(people["set_name"], pa.array(patient))
    site = _take(people["site_codes"], people["site_index"][patient])
    study_uid = _strings(image_study, "2.25.9001.")
    series_uid = pc.binary_join_element_wise(study_uid, _strings(series), ".")
    sop_uid = _strings(np.arange(count), "2.25.9002.")
    days = (np.datetime64(EPOCH) + study_day[image_study].astype("timedelta64[D]"))
    received = days.astype("datetime64[us]") + rng.integers(1, 30 * 86_400, size=count).astype("timedelta64[s]")
    is_xray = modality <= 1
    rows = np.where(is_xray, 2048, np.where(modality == 2, 512, 256)).astype(np.int32)
    size = (rows.astype(np.int64) ** 2) * 2 + rng.integers(1_000, 4_000, size=count)
    sep = "/"
    storage_key = pc.binary_join_element_wise(
        set_name, folder, pseudonym, study_uid, series_uid,
        pc.binary_join_element_wise(sop_uid, ".dcm", ""), sep)
    sex = _take(np.array(["M", "F", "O"]), people["sex"][patient])
    age = people["age"][patient]

    columns = {
        "pseudonym": pseudonym, "site": site, "set_name": set_name, "modality": modality_text,
        "folder": folder, "study_uid": study_uid, "series_uid": series_uid, "sop_uid": sop_uid,
        "sop_class_uid": _take(np.array(["1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1",
                                         "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"]),
                               modality),
        "study_date": pa.array(days, pa.date32()), "series_date": pa.array(days, pa.date32()),
        "body_part": pa.repeat(pa.scalar("CHEST"), count),
        "manufacturer": _take(np.array(["Synthetic A", "Synthetic B", "Synthetic C"]),
                              rng.integers(0, 3, size=count)),
        "model": _take(np.array(["Model 1", "Model 2"]), rng.integers(0, 2, size=count)),
        "rows": pa.array(rows), "columns": pa.array(rows),
        "pixel_spacing": _take(np.array(["0.139\\0.139", "0.7\\0.7", "0.9\\0.9"]),
                               np.where(is_xray, 0, np.where(modality == 2, 1, 2))),
        "view_position": _take(np.array(["PA", "AP", ""]),
                               np.where(is_xray, rng.integers(0, 2, size=count), 2)),
        "patient_sex": sex, "patient_age": pa.array(age, pa.int32()),
        "storage_key": storage_key, "size": pa.array(size),
        "sha256": _hex_digests(rng, count),
        "transfer_syntax": pa.repeat(pa.scalar("1.2.840.10008.1.2.1"), count),
        "received_at": pa.array(received),
    }
    return pa.table(columns).cast(cs.IMAGES_SCHEMA)


def _clinical(rng: np.random.Generator, people: dict) -> pa.Table:
    """One record for 80% of patients (positive or negative template), as cleaned JSON."""
    count = len(people["pseudonym"])
    chosen = np.nonzero(rng.random(count) >= 0.2)[0]
    pseudonyms = people["pseudonym"].to_pylist()
    set_names = people["set_name"].to_pylist()
    days = rng.integers(0, 480, size=count)
    stay = rng.integers(0, 30, size=count)
    itu = rng.random(count) < 0.2
    death = rng.random(count) < 0.12
    columns: dict[str, list] = {name: [] for name in cs.CLINICAL_BASE_SCHEMA.names}
    for i in chosen.tolist():
        swab = np.datetime64(EPOCH) + np.timedelta64(int(days[i]), "D")
        sex, ethnicity = SEXES[people["sex"][i]], ETHNICITIES[people["ethnicity"][i]]
        if people["positive"][i]:
            kind = "positive"
            admission = swab + np.timedelta64(int(stay[i] % 5), "D")
            cleaned = {
                "age": int(people["age"][i]), "sex": sex, "ethnicity": ethnicity,
                "date_of_positive_covid_swab": str(swab), "date_of_admission": str(admission),
                "itu_admission": "Yes" if itu[i] else "No",
                "date_of_itu_admission": str(admission + np.timedelta64(1, "D")) if itu[i] else None,
                "intubation": "Yes" if itu[i] and death[i] else "No",
                "death": "Yes" if death[i] else "No",
                "date_of_death": str(admission + np.timedelta64(int(stay[i]), "D")) if death[i] else None,
                "final_covid_status": "Positive", "smoking_status": "Never smoked",
                "pmh_hypertension": "Yes" if people["age"][i] > 65 else "No",
            }
        else:
            kind = "negative"
            cleaned = {"swabs": [{"date": str(swab), "status": "Negative"}],
                       "latest_swab_date": str(swab), "latest_swab_status": "Negative",
                       "any_positive_swab": False}
        columns["pseudonym"].append(pseudonyms[i])
        columns["site"].append(str(people["site_codes"][people["site_index"][i]]))
        columns["kind"].append(kind)
        columns["set_name"].append(set_names[i])
        columns["updated_at"].append(datetime(2021, 7, 1) + (swab - np.datetime64(EPOCH)).astype(object))
        columns["cleaned"].append(json.dumps(cleaned, sort_keys=True))
        columns["national"].append("[]")  # no typed sheet values here: no national files
    return pa.table(columns, schema=cs.CLINICAL_BASE_SCHEMA)
