"""The clinical fields a cohort takes are those cleaned records hold. The negative template's
swab_date and swab_status were listed (and swab_date offered as a date field for a window) but
the cleaner folds a patient's swab rows into ``swabs``, ``latest_swab_date``,
``latest_swab_status`` and ``any_positive_swab``: every test on them matched no one. Here the
records come from synthetic sheets of each template through the real validator and cleaner,
into a catalogue the warehouse's own flattening builds."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nccid.clinical import reader, validation
from nccid.clinical.schema import KINDS, templates
from nccid.identity.keys import Keyring
from nccid.research.cohort import Cohort, CohortError, CohortFilter, field_kinds, known_fields
from nccid.research.source import Source
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.people import people
from nccid.warehouse.catalogue_schema import (
    CLINICAL_BASE_SCHEMA,
    IMAGES_SCHEMA,
    PATIENTS_SCHEMA,
    clinical_columns,
    flatten_clinical,
)

STUDY_DAY = date(2020, 6, 1)  # within a century of every clinical date


def cleaned_records(kind: str, folder: Path) -> list[dict]:
    """Each patient's cleaned record of a synthetic ``kind`` sheet, as the validator makes it."""
    path = folder / f"{kind}.xlsx"
    write_sheet(kind, people(12, seed=3), path, seed=4)
    sheet = reader.read_bytes(path.read_bytes())
    result = validation.validate(sheet, reader.layout(sheet, kind), validation.SiteRules("RTEST"),
                                 Keyring(b"k" * 32))
    assert result.records and not [p for p in result.problems if p.severity == "error"]
    return [{"pseudonym": r.pseudonym, "kind": kind, "cleaned": r.cleaned} for r in result.records]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("sheets")
    return [record for kind in KINDS for record in cleaned_records(kind, folder)]


@pytest.fixture(scope="module")
def source(records, tmp_path_factory) -> Source:
    """A catalogue of those records (one image each, so windows have something to find)."""
    out = tmp_path_factory.mktemp("cleaned-catalogue")
    base = pa.Table.from_pylist(
        [{"pseudonym": r["pseudonym"], "site": "RTEST", "kind": r["kind"], "set_name": "training",
          "cleaned": json.dumps(r["cleaned"]), "national": "{}"} for r in records],
        CLINICAL_BASE_SCHEMA)
    pq.write_table(flatten_clinical(duckdb.connect(), base), out / "clinical.parquet")
    pseudonyms = sorted({r["pseudonym"] for r in records})
    pq.write_table(pa.Table.from_pylist(
        [{"pseudonym": p, "set_name": "training", "covid_status": "unknown", "sites": ["RTEST"],
          "n_studies": 1, "n_images": 1, "has_clinical": True} for p in pseudonyms],
        PATIENTS_SCHEMA), out / "patients.parquet")
    pq.write_table(pa.Table.from_pylist(
        [{"pseudonym": p, "site": "RTEST", "set_name": "training", "modality": "DX",
          "folder": "xray", "study_uid": f"2.25.{n}", "series_uid": f"2.25.{n}.1",
          "sop_uid": f"2.25.{n}.1.1", "study_date": STUDY_DAY} for n, p in enumerate(pseudonyms)],
        IMAGES_SCHEMA), out / "images.parquet")
    return Source(connect=lambda: _connect(out), warehouse=None)


def _connect(directory: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in ("images", "patients", "clinical"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{directory / name}.parquet')")
    return con


def patients(source: Source, **criteria) -> int:
    cohort = Cohort(CohortFilter.from_dict(criteria), ("training",), source)
    try:
        return cohort.counts().patients
    finally:
        cohort.close()


def held_values(records: list[dict]) -> dict[str, list]:
    """Each field -> the values (not None) some record holds for it."""
    held: dict[str, list] = {}
    for record in records:
        for name, value in record["cleaned"].items():
            if value is not None:
                held.setdefault(name, []).append(value)
    return held


def test_every_known_field_is_one_cleaned_records_hold(records):
    holds = {name for r in records for name in r["cleaned"]}
    assert known_fields() - holds == set()
    assert {"latest_swab_date", "latest_swab_status", "any_positive_swab"} <= known_fields()


@pytest.mark.parametrize("kind", KINDS)
def test_each_template_says_what_its_cleaned_records_hold(records, kind):
    """The template's cleaned fields (and the list its rows are folded into) are the keys the
    cleaner writes, but for derived fields the catalogue flattens (the ISARIC 4C score)."""
    template = templates()[kind]
    holds = {name for r in records if r["kind"] == kind for name in r["cleaned"]}
    said = set(template.cleaned_fields()) | ({template.rows_cleaned_as} - {None})
    assert said <= holds
    assert holds - said <= set(clinical_columns())


def test_every_field_holding_data_finds_its_patients_by_its_kind(records, source):
    """A text field by = on a value held, a number or date field by = and by <= and >= around
    one, and a date field also as a window's centre: each finds someone."""
    held = held_values(records)
    empty = []
    for name, kind in sorted(field_kinds().items()):
        if name not in held:
            continue  # no synthetic row fills it (a column kept out of the download)
        value = held[name][0]
        if kind == "text":
            tests = [{"clinical": [f"{name}={str(value).lower() if isinstance(value, bool) else value}"]}]
        else:
            tests = [{"clinical": [f"{name}={value}"]},
                     {"clinical": [f"{name}>={value}", f"{name}<={value}"]}]
        if kind == "date":
            tests.append({"within": {"field": name, "days": 36_500}})
        empty += [test for test in tests if patients(source, **test) == 0]
    assert empty == []


def test_only_columns_kept_out_of_the_download_hold_no_data(records):
    """The test above skips a field only when no synthetic row can fill it."""
    unfilled = known_fields() - set(held_values(records))
    kept_out = {c.field for t in templates().values() for c in t.columns if not c.in_template}
    assert unfilled <= kept_out


@pytest.mark.parametrize(("condition", "replacement"), [
    ("swab_date>1900-01-01", "latest_swab_date"),
    ("swab_status=Negative", "latest_swab_status"),
])
def test_a_folded_column_is_refused_naming_its_replacements(source, condition, replacement):
    with pytest.raises(CohortError, match=replacement) as raised:
        patients(source, clinical=[condition])
    assert "swabs" in str(raised.value)
    assert "known fields" not in str(raised.value)  # not a misspelling: it says what to use


def test_a_window_around_swab_date_is_refused_naming_latest_swab_date(source):
    with pytest.raises(CohortError, match="latest_swab_date"):
        patients(source, within={"field": "swab_date", "days": 30})


def test_refusals_list_no_folded_column_among_the_fields_that_answer(source):
    with pytest.raises(CohortError) as raised:
        patients(source, within={"field": "age", "days": 3})
    listed = str(raised.value).split("date fields: ")[1].split(", ")
    assert "swab_date" not in listed and "latest_swab_date" in listed
