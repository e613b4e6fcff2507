"""The catalogue's files and views: schemas, derived tables and a DuckDB connection over them.

Pure library (no Django): the warehouse's ``catalogue.refresh_catalogue`` and the synthetic
benchmark catalogue both write through here, and ``connect_directory`` opens either.

A catalogue directory holds ``state.json`` naming every Parquet file of the current version:
``images`` (append-only parts), and ``studies``, ``clinical``, ``patients`` (rebuilt each
refresh). Readers only open files the state names, so a half-written refresh is never seen.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from nccid.modalities import non_image_modalities

STATE_FILE = "state.json"
STATE_FORMAT = 1
VIEWS = ("images", "studies", "clinical", "patients")

IMAGES_SCHEMA = pa.schema([
    ("pseudonym", pa.string()), ("site", pa.string()), ("set_name", pa.string()),
    ("modality", pa.string()), ("folder", pa.string()), ("study_uid", pa.string()),
    ("series_uid", pa.string()), ("sop_uid", pa.string()), ("sop_class_uid", pa.string()),
    ("study_date", pa.date32()), ("series_date", pa.date32()), ("body_part", pa.string()),
    ("manufacturer", pa.string()), ("model", pa.string()), ("rows", pa.int32()),
    ("columns", pa.int32()), ("pixel_spacing", pa.string()), ("view_position", pa.string()),
    ("patient_sex", pa.string()), ("patient_age", pa.int32()), ("storage_key", pa.string()),
    ("size", pa.int64()), ("sha256", pa.string()), ("transfer_syntax", pa.string()),
    ("received_at", pa.timestamp("us")),
])

STUDIES_SCHEMA = pa.schema([
    ("pseudonym", pa.string()), ("site", pa.string()), ("set_name", pa.string()),
    ("modality", pa.string()), ("study_uid", pa.string()), ("study_date", pa.date32()),
    ("n_series", pa.int32()), ("n_images", pa.int32()), ("bytes", pa.int64()),
    ("first_received", pa.timestamp("us")),
])

CLINICAL_BASE_SCHEMA = pa.schema([
    ("pseudonym", pa.string()), ("site", pa.string()), ("kind", pa.string()),
    ("set_name", pa.string()), ("updated_at", pa.timestamp("us")), ("cleaned", pa.string()),
    ("national", pa.string()),  # the record in the national files' format (warehouse.national)
])

PATIENT_SETS_SCHEMA = pa.schema([("pseudonym", pa.string()), ("set_name", pa.string())])

PATIENTS_SCHEMA = pa.schema([
    ("pseudonym", pa.string()), ("set_name", pa.string()), ("covid_status", pa.string()),
    ("sites", pa.list_(pa.string())), ("age", pa.int32()), ("sex", pa.string()),
    ("ethnicity", pa.string()), ("n_studies", pa.int32()), ("n_images", pa.int32()),
    ("has_clinical", pa.bool_()),
])

_ARROW_TYPES = {"INTEGER": pa.int32(), "VARCHAR": pa.string(), "DATE": pa.date32(),
                "BOOLEAN": pa.bool_(), "DOUBLE": pa.float64()}


@cache
def clinical_columns() -> dict[str, str]:
    """Flattened clinical fields, name -> DuckDB type (``data/clinical_columns.json``)."""
    text = resources.files("nccid.warehouse").joinpath("data/clinical_columns.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def clinical_schema() -> pa.Schema:
    fields = list(CLINICAL_BASE_SCHEMA)
    fields += [pa.field(name, _ARROW_TYPES[kind]) for name, kind in clinical_columns().items()]
    return pa.schema(fields)


SCHEMAS = {"images": IMAGES_SCHEMA, "studies": STUDIES_SCHEMA, "patients": PATIENTS_SCHEMA}


def schema_of(view: str) -> pa.Schema:
    return clinical_schema() if view == "clinical" else SCHEMAS[view]


def _typed(name: str, kind: str) -> str:
    value = f"json_extract_string(cleaned, '$.{name}')"
    if kind == "INTEGER":  # whole years/scores: 63.0 and "63" both count, fractions floor
        return f"CAST(floor(TRY_CAST({value} AS DOUBLE)) AS INTEGER) AS {name}"
    return f"TRY_CAST({value} AS {kind}) AS {name}"


def flatten_clinical(con: duckdb.DuckDBPyConnection, base: pa.Table) -> pa.Table:
    """Add the typed columns of ``clinical_columns()`` to a table of CLINICAL_BASE_SCHEMA."""
    con.register("_clinical_base", base.cast(CLINICAL_BASE_SCHEMA))
    columns = ", ".join(_typed(name, kind) for name, kind in clinical_columns().items())
    table = con.sql(f"SELECT *, {columns} FROM _clinical_base").to_arrow_table()
    con.unregister("_clinical_base")
    return table.cast(clinical_schema())


def studies_sql() -> str:
    """One row per study; its modality that of its images (a presentation state or key object
    decides only for a study without images), the most common one among them."""
    not_images = ", ".join(f"'{code}'" for code in non_image_modalities())
    return STUDIES_SQL.replace(
        "mode(modality) AS modality",
        f"coalesce(mode(modality) FILTER (WHERE modality NOT IN ({not_images})), "
        "mode(modality)) AS modality")


STUDIES_SQL = """
SELECT any_value(pseudonym) AS pseudonym, any_value(site) AS site, any_value(set_name) AS set_name,
       mode(modality) AS modality, study_uid, min(study_date) AS study_date,
       count(DISTINCT series_uid)::INTEGER AS n_series, count(*)::INTEGER AS n_images,
       sum(size)::BIGINT AS bytes, min(received_at) AS first_received
FROM images GROUP BY study_uid ORDER BY first_received, study_uid
"""

# COVID status per docs/architecture.md: positive if any positive-template record (or any
# positive swab), negative if only negative records, otherwise unknown.
PATIENTS_SQL = """
WITH img AS (
  SELECT pseudonym, count(DISTINCT study_uid) AS n_studies, count(*) AS n_images,
         max(patient_age) AS age, max(patient_sex) FILTER (WHERE patient_sex IN ('M', 'F')) AS sex
  FROM images GROUP BY pseudonym),
cl AS (
  SELECT pseudonym,
         bool_or(kind = 'positive' OR coalesce(any_positive_swab, false)
                 OR final_covid_status = 'Positive') AS positive,
         bool_or(kind = 'negative') AS negative,
         max(age) AS age,
         max(sex) FILTER (WHERE sex IN ('Male', 'Female')) AS sex,
         max(ethnicity) FILTER (WHERE ethnicity IS NOT NULL AND ethnicity <> 'Unknown') AS ethnicity
  FROM clinical GROUP BY pseudonym),
site_pairs AS (SELECT DISTINCT pseudonym, site FROM images
               UNION SELECT DISTINCT pseudonym, site FROM clinical),
sites AS (SELECT pseudonym, list(site ORDER BY site) AS sites FROM site_pairs GROUP BY pseudonym)
SELECT ps.pseudonym, ps.set_name,
       CASE WHEN cl.positive THEN 'positive' WHEN cl.negative THEN 'negative' ELSE 'unknown' END
         AS covid_status,
       coalesce(sites.sites, []::VARCHAR[]) AS sites,
       coalesce(cl.age, img.age)::INTEGER AS age,
       coalesce(cl.sex, CASE img.sex WHEN 'M' THEN 'Male' WHEN 'F' THEN 'Female' END, 'Unknown') AS sex,
       coalesce(cl.ethnicity, 'Unknown') AS ethnicity,
       coalesce(img.n_studies, 0)::INTEGER AS n_studies,
       coalesce(img.n_images, 0)::INTEGER AS n_images,
       cl.pseudonym IS NOT NULL AS has_clinical
FROM patient_sets ps
LEFT JOIN img USING (pseudonym) LEFT JOIN cl USING (pseudonym) LEFT JOIN sites USING (pseudonym)
ORDER BY ps.pseudonym
"""


def derive_tables(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """``studies`` and ``patients`` from views/tables ``images``, ``clinical``, ``patient_sets``."""
    return {
        "studies": con.sql(studies_sql()).to_arrow_table().cast(STUDIES_SCHEMA),
        "patients": con.sql(PATIENTS_SQL).to_arrow_table().cast(PATIENTS_SCHEMA),
    }


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def connect_files(files: Mapping[str, list[str]]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per catalogue table over local Parquet files.

    A table without files is an empty view of the right columns and types.
    """
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    for view in VIEWS:
        paths = files.get(view) or []
        if paths:
            listed = ", ".join(_quote(str(p)) for p in paths)
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet([{listed}])")
        else:
            con.register(f"_empty_{view}", schema_of(view).empty_table())
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM _empty_{view}")
    return con


def read_state(directory: str | Path) -> dict:
    path = Path(directory) / STATE_FILE
    if not path.exists():
        return empty_state()
    return json.loads(path.read_text())


def empty_state() -> dict:
    return {"format": STATE_FORMAT, "version": 0, "files": {v: [] for v in VIEWS},
            "image_parts": {}, "counts": {}}


def connect_directory(directory: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a catalogue directory (the warehouse's on a local backend, a cache, or a synthetic one)."""
    directory = Path(directory)
    state = read_state(directory)
    files = {view: [directory / entry["key"] for entry in state["files"].get(view, [])]
             for view in VIEWS}
    return connect_files(files)
