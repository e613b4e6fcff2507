"""Research benchmarks.

1. Cohort queries (counts, then the first page) over a synthetic catalogue of 1,000,000 images
   and 100,000 patients (``nccid.synthetic.catalogue.make_catalogue``): target under 1 s each.
2. Exporting 10,000 images (folder, checksums verified while streaming) compared with a plain
   copy of the same files, peak RSS of the exporting process: target < 500 MB.

    .venv/bin/python -m bench.bench_research [--small] [--keep DIR]
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).parent
QUERIES = {
    "all training": {},
    "CT, positive": {"modality": ["CT"], "covid_status": ["positive"]},
    "CT within 7 d of positive swab, ITU": {"modality": ["CT"], "clinical": ["itu_admission=Yes"],
                                            "within": {"field": "date_of_positive_covid_swab", "days": 7}},
    "female 60-80, xray, April 2020": {"sex": ["Female"], "age_min": 60, "age_max": 80,
                                       "modality": ["xray"], "study_date_from": "2020-04-01",
                                       "study_date_to": "2020-04-30"},
}


def bench_cohort(work: Path, images: int, patients: int) -> dict:
    from nccid.research.cohort import Cohort, CohortFilter
    from nccid.research.source import Source
    from nccid.synthetic.catalogue import make_catalogue
    from nccid.warehouse.catalogue_schema import connect_directory

    started = time.perf_counter()
    make_catalogue(work / "catalogue", images=images, patients=patients, seed=5)
    built = time.perf_counter() - started
    source = Source(connect=lambda: connect_directory(work / "catalogue"), warehouse=None)
    out = {"catalogue_images": images, "catalogue_patients": patients,
           "catalogue_build_s": round(built, 1), "queries": {}}
    for name, spec in QUERIES.items():
        timings = []
        for _ in range(3):
            t0 = time.perf_counter()
            cohort = Cohort(CohortFilter.from_dict(spec), ("training",), source)
            counts = cohort.counts()
            cohort.images(limit=100)
            timings.append(time.perf_counter() - t0)
            cohort.close()
        out["queries"][name] = {"seconds_best": round(min(timings), 3),
                                "seconds_first": round(timings[0], 3), **counts.as_dict()}
    return out


# ---------------------------------------------------------------- export

def _make_export_warehouse(root: Path, n: int, pixels: int) -> None:
    """``n`` real DICOM files of ``pixels``² 16-bit pixels in the bucket layout + a catalogue."""
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pydicom.uid import generate_uid

    from nccid.synthetic.dicom import synthetic_instance, to_bytes
    from nccid.synthetic.people import people

    person = people(1, seed=42)[0]
    ds = synthetic_instance(person, modality="CT", rows=pixels, columns=pixels, plant=False)
    ds.PatientID = ds.PatientName = "NCCID-BENCHAAAAAAAAAAAA"
    del ds.PatientBirthDate
    rows, per_patient = [], 50
    for i in range(n):
        p = f"NCCID-BENCH{i // per_patient:011d}".translate(str.maketrans("0189", "ABCD"))
        st, se, sop = f"2.25.{i // per_patient + 1}1", f"2.25.{i // per_patient + 1}2", generate_uid(prefix=None)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = st, se, p
        data = to_bytes(ds)
        key = f"training/ct/{p}/{st}/{se}/{sop}.dcm"
        path = root / "warehouse" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append({"pseudonym": p, "site": "BENCH", "set_name": "training", "modality": "CT",
                     "folder": "ct", "study_uid": st, "series_uid": se, "sop_uid": sop,
                     "study_date": date(2020, 4, 1) + timedelta(days=i % 60),
                     "storage_key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    cat = root / "catalogue"
    cat.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), cat / "images.parquet")
    con = duckdb.connect()
    con.execute(f"COPY (SELECT DISTINCT pseudonym, 'training' AS set_name, 'positive' AS covid_status, "
                f"['BENCH'] AS sites, 50 AS age, 'Female' AS sex, 'White' AS ethnicity "
                f"FROM '{cat}/images.parquet') TO '{cat}/patients.parquet'")
    con.execute(f"COPY (SELECT DISTINCT pseudonym, 'BENCH' AS site, 'positive' AS kind, "
                f"'training' AS set_name, NULL::TIMESTAMP AS updated_at, '{{}}' AS cleaned "
                f"FROM '{cat}/images.parquet') TO '{cat}/clinical.parquet'")
    del np


def _connect(cat: Path):
    import duckdb

    con = duckdb.connect()
    for view in ("images", "patients", "clinical"):
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM '{cat}/{view}.parquet'")
    return con


class _Dir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, key: str):
        return (self.root / key).open("rb")

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()


def _peak_rss_mb() -> float:
    """This process's own high-water mark (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _export_child(root: str, dest: str, queue) -> None:
    from nccid.research.cohort import Cohort, CohortFilter
    from nccid.research.export import write_export
    from nccid.research.source import Source

    baseline = _peak_rss_mb()
    root_path = Path(root)
    source = Source(connect=lambda: _connect(root_path / "catalogue"), warehouse=_Dir(root_path / "warehouse"))
    t0 = time.perf_counter()
    result = write_export(Cohort(CohortFilter(), ("training",), source), Path(dest), ("parquet", "csv", "dicom"))
    seconds = time.perf_counter() - t0
    queue.put({"rss_after_imports_mb": baseline, "seconds": seconds, "files": result.files, "bytes": result.bytes,
               "peak_rss_mb": _peak_rss_mb()})


def _plain_copy(src: Path, dest: Path) -> float:
    t0 = time.perf_counter()
    for path in src.rglob("*.dcm"):
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as a, target.open("wb") as b:
            shutil.copyfileobj(a, b, 1024 * 1024)
    return time.perf_counter() - t0


def bench_export(work: Path, n: int, pixels: int) -> dict:
    root = work / "export-src"
    t0 = time.perf_counter()
    _make_export_warehouse(root, n, pixels)
    built = time.perf_counter() - t0
    total = sum(p.stat().st_size for p in (root / "warehouse").rglob("*.dcm"))
    copy_s = _plain_copy(root / "warehouse", work / "plain-copy")
    shutil.rmtree(work / "plain-copy")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_export_child, args=(str(root), str(work / "export-out"), queue))
    child.start()
    got = queue.get(timeout=3600)
    child.join()
    mb = total / 1e6
    return {"images": n, "image_mb_total": round(mb, 1), "warehouse_build_s": round(built, 1),
            "plain_copy_s": round(copy_s, 2), "plain_copy_mb_s": round(mb / copy_s, 1),
            "export_s": round(got["seconds"], 2), "export_mb_s": round(mb / got["seconds"], 1),
            "export_vs_plain_copy": round(copy_s / got["seconds"], 2),
            "export_files": got["files"], "export_peak_rss_mb": round(got["peak_rss_mb"], 1),
            "export_rss_after_imports_mb": round(got["rss_after_imports_mb"], 1)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    small = "--small" in argv
    keep = argv[argv.index("--keep") + 1] if "--keep" in argv else None
    images, patients = (100_000, 10_000) if small else (1_000_000, 100_000)
    n_export, pixels = (1_000, 256) if small else (10_000, 256)
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="nccid-bench-research-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = {"cohort": bench_cohort(work, images, patients),
                  "export": bench_export(work, n_export, pixels)}
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)

    from rich.console import Console
    from rich.table import Table

    table = Table("figure", "value", title="research")
    for name, q in result["cohort"]["queries"].items():
        table.add_row(f"cohort '{name}' ({images:,} images)",
                      f"{q['seconds_best']} s best, {q['seconds_first']} s first; "
                      f"{q['patients']:,} patients / {q['images']:,} images")
    ex = result["export"]
    table.add_row(f"export {ex['images']:,} images ({ex['image_mb_total']} MB)",
                  f"{ex['export_s']} s = {ex['export_mb_s']} MB/s "
                  f"(plain copy {ex['plain_copy_mb_s']} MB/s; ratio {ex['export_vs_plain_copy']})")
    table.add_row("export peak RSS", f"{ex['export_peak_rss_mb']} MB "
                  f"({ex['export_rss_after_imports_mb']} MB after imports)")
    Console().print(table)
    (HERE / "output").mkdir(exist_ok=True)
    (HERE / "output" / "research.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
