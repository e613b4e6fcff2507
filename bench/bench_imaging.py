"""Imaging intake figures, side by side on one synthetic corpus the bench generates.

- ``cp -r`` of the corpus (the floor for any import), median of ``--repeat`` runs;
- ``nccid images import`` (single process, de-identification included), median of as many
  runs, and its peak RSS;
- ``dicom-anonymizer`` (PyPI) on the same files;
- the DICOM node end to end (dcmtk ``storescu`` -> ``nccid node`` -> warehouse: the clock
  stops when the last file is catalogued in the database, not at the last acknowledgement)
  and its peak RSS, next to dcmtk's own ``storescp`` and a bare pynetdicom receiver that only
  writes bytes; each receiver's median of ``--repeat`` runs.

Full size: ~200 patients, a 2048x2048 16-bit chest X-ray each and a 512x512 CT series for
one in five (2 GB+). ``--small`` runs the same at a tenth of the size. Writes
``bench/output/imaging.json``.

Also shown, for reading the figures: ``cp -r`` followed by ``sync`` (a copy that is on disk,
as every stored image is before import or node count it stored), and the in-process cost of
de-identifying one chest X-ray and one CT slice (parse, de-identify, encode the header).
Before each timed run, dirty pages of the last are written out (``sync``) and the corpus is
read once, so that every leg starts from the same warm page cache: this VM's proactive
reclaim otherwise evicts idle files, and whichever leg came next read them from the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nccid.imaging.dcmtk import dcmtk_tool

HERE = Path(__file__).parent
NCCID = [sys.executable, "-m", "nccid.cli.main"]
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}

BARE_RECEIVER = r"""
import sys, threading
from pathlib import Path
from pynetdicom import AE, AllStoragePresentationContexts, ALL_TRANSFER_SYNTAXES, evt
out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
count = [0]; lock = threading.Lock()
def store(event):
    data = event.encoded_dataset()
    with lock:
        count[0] += 1; n = count[0]
    (out / f"{n}.dcm").write_bytes(data)
    return 0
ae = AE(ae_title="BARE")
ae.maximum_pdu_size = 0
for cx in AllStoragePresentationContexts:
    ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, store)])
"""


def make_corpus(root: Path, patients: int, console: Console) -> tuple[int, int]:
    """Write the corpus; returns (files, bytes)."""
    from nccid.synthetic.dicom import synthetic_instance, to_bytes
    from nccid.synthetic.people import people

    files = size = 0
    crowd = people(patients, seed=1, site_prefix="BN")
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    for i, person in enumerate(crowd):
        # One flat folder: dicom-anonymizer does not walk sub-folders.
        cxr = synthetic_instance(person, modality="DX", rows=2048, columns=2048, bits=12,
                                 patient_id=person.nhs_number, plant=False, pixel_seed=i)
        data = to_bytes(cxr)
        (root / f"p{i:04d}-cxr.dcm").write_bytes(data)
        files, size = files + 1, size + len(data)
        if i % 5 == 0:
            for s in range(1, 41):
                ct = synthetic_instance(person, modality="CT", study=2, instance=s, rows=512,
                                        columns=512, patient_id=person.nhs_number, plant=False,
                                        pixel_seed=s)
                data = to_bytes(ct)
                (root / f"p{i:04d}-ct{s:03d}.dcm").write_bytes(data)
                files, size = files + 1, size + len(data)
    console.print(f"corpus: {files} files, {size / 1e9:.2f} GB in "
                  f"{time.perf_counter() - started:.0f} s")
    return files, size


def timed(cmd: list[str], env=None, cwd=None) -> tuple[float, int, int]:
    """Run ``cmd``; (seconds, exit status, peak RSS of that process in MB)."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a full pipe stalls the child
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            errors.seek(0)
            sys.stderr.write(errors.read().decode(errors="replace")[-2000:])
    return seconds, proc.returncode, usage.ru_maxrss // 1024


def settle(corpus: Path) -> None:
    """Write out the last leg's dirty pages, then read the corpus (a warm start for each)."""
    subprocess.run(["sync"], check=False)
    for path in sorted(corpus.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(8 * 1024 * 1024):
                    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def fresh_home(base: Path, name: str) -> dict:
    home = base / name
    env = {**os.environ, "NCCID_HOME": str(home)}
    for key in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL"):
        env.pop(key, None)
    subprocess.run([*NCCID, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*NCCID, "site", "add", "BENCH", "--name", "Bench Hospital", "--ae-title",
                    "BENCH_PACS"], env=env, check=True, capture_output=True)
    return env


def receive(server_cmd: list[str], port: int, corpus: Path, env=None,
            done=None) -> tuple[float, int]:
    """Start a receiver, send the corpus with dcmtk storescu; (seconds, receiver peak RSS MB).

    ``done()``, if given, must become true before the clock stops (the node acknowledges from
    its spool: the time runs until the last file is de-identified in the warehouse)."""
    settle(corpus)
    server = subprocess.Popen(server_cmd, env=env or DCMTK_ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    peak = 0
    try:
        wait_port(port)
        started = time.perf_counter()
        _, status, _ = timed([dcmtk_tool("storescu"), "-aet", "BENCH_PACS", "-aec", "NCCID",
                              "+sd", "+r", "-nh", "127.0.0.1", str(port), str(corpus)],
                             env=DCMTK_ENV)
        if status:
            raise RuntimeError(f"storescu failed ({status}) sending to {server_cmd[0:3]}")
        deadline = time.monotonic() + 600
        while done is not None and not done():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the receiver did not store every file")
            time.sleep(0.05)  # polling a benchmark's end condition, not a test
        seconds = time.perf_counter() - started
        peak = peak_rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return seconds, peak


def peak_rss_mb(pid: int) -> int:
    """High-water mark of resident memory (VmHWM) of the process and of the processes it
    started (the node's de-identification process), added up, in MB."""
    total = 0
    for each in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) // 1024
        except FileNotFoundError:
            continue
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


DEID_COST = r"""
import json, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.engine import _after_header, _encode_parts, parse_header
deid = Deidentifier(Keyring(bytes(range(32))))
out = {}
for kind in ("cxr", "ct"):
    files = sorted(Path(sys.argv[1]).glob(f"*-{kind}*.dcm"))[:40]
    datas = [f.read_bytes() for f in files]
    started = time.perf_counter()
    for data in datas:
        ds, pixel = _after_header(data, *parse_header(data))
        deid.deidentify(ds, pseudonym="NCCID-BENCH00000000000")
        _encode_parts(ds, pixel)
    out[f"deid_ms_per_{kind}"] = round((time.perf_counter() - started) / len(datas) * 1000, 2)
print(json.dumps(out))
"""


def deid_cost(corpus: Path) -> dict:
    """Milliseconds to parse, de-identify and encode one file, chest X-ray and CT apart."""
    result = subprocess.run([sys.executable, "-c", DEID_COST, str(corpus)], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def count_records(env: dict) -> int:
    import sqlite3

    with sqlite3.connect(Path(env["NCCID_HOME"]) / "nccid.sqlite3") as db:
        return db.execute("select count(*) from warehouse_imagerecord").fetchone()[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tenth of the size (~20 patients)")
    parser.add_argument("--patients", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-anonymizer", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of cp -r and of the import (their medians are compared)")
    parser.add_argument("--only", choices=["import", "node"], default=None,
                        help="import: only cp -r and the import; node: only the receiving legs")
    args, _ = parser.parse_known_args(argv)
    import warnings

    warnings.filterwarnings("ignore", module="pydicom")  # synthetic UIDs the generator writes
    patients = args.patients or (20 if args.small else 200)
    console = Console()
    base = Path(tempfile.mkdtemp(prefix="nccid-bench-imaging-", dir=args.workdir))
    # Every leg but cp -r and storescp is Python: its interpreter's build moves the figures
    # (docs/benchmarks.md, sixteenth session).
    figures: dict = {"python": f"{platform.python_version()} ({sys.base_prefix})",
                     "patients": patients}
    try:
        corpus = base / "corpus"
        files, size = make_corpus(corpus, patients, console)
        figures.update(files=files, corpus_gb=round(size / 1e9, 3))
        mb = size / 1e6

        if args.only != "node":
            _copy_and_import_legs(args, base, corpus, files, mb, figures, console)
        if args.only == "import":
            return _report(figures, files, size, console)
        _receiving_legs(args, base, corpus, files, mb, figures, console)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _report(figures, files, size, console)


def _receiving_legs(args, base: Path, corpus: Path, files: int, mb: float, figures: dict,
                    console: Console) -> None:
    """dcmtk's storescp, a bare pynetdicom receiver and the node, each receiving the corpus
    from dcmtk's storescu ``--repeat`` times (medians compared: a single run of a receiver
    on a shared machine varies by 20 % or more)."""

    def storescp(port: int) -> tuple[float, int]:
        (base / "storescp").mkdir()
        try:
            return receive([dcmtk_tool("storescp"), "-od", str(base / "storescp"), "+B",
                            str(port)], port, corpus)
        finally:
            shutil.rmtree(base / "storescp", ignore_errors=True)

    def bare(port: int) -> tuple[float, int]:
        script = base / "bare.py"
        script.write_text(BARE_RECEIVER)
        try:
            return receive([sys.executable, str(script), str(port), str(base / "bare")],
                           port, corpus)
        finally:
            shutil.rmtree(base / "bare", ignore_errors=True)

    def node(port: int) -> tuple[float, int]:
        env = fresh_home(base, "node-home")  # a fresh warehouse: nothing is a duplicate
        try:
            seconds, rss = receive([*NCCID, "node", "--port", str(port)], port, corpus,
                                   env={**env, "TCP_NODELAY": "1"},
                                   done=lambda: count_records(env) >= files)
            figures["node_stored"] = count_records(env)
            return seconds, rss
        finally:
            shutil.rmtree(base / "node-home", ignore_errors=True)

    for name, leg in (("storescp", storescp), ("bare_pynetdicom", bare), ("node", node)):
        runs, peaks = [], []
        for _ in range(args.repeat):
            seconds, rss = leg(free_port())
            runs.append(seconds)
            peaks.append(rss)
        seconds = statistics.median(runs)
        figures.update({f"{name}_runs_s": [round(r, 2) for r in runs],
                        f"{name}_s": round(seconds, 2), f"{name}_mb_s": round(mb / seconds, 1)})
        if name == "node":
            figures["node_peak_rss_mb"] = max(peaks)
        console.print(f"{name}: {figures[f'{name}_runs_s']} s, median {mb / seconds:.1f} MB/s")


def _copy_and_import_legs(args, base: Path, corpus: Path, files: int, mb: float, figures: dict,
                          console: Console) -> None:
    """cp -r (and then sync), the import, and dicom-anonymizer on the same corpus."""
    runs = []
    for _ in range(args.repeat):
        settle(corpus)
        seconds, _, _ = timed(["cp", "-r", str(corpus), str(base / "copy")])
        runs.append(seconds)
        shutil.rmtree(base / "copy")
    figures["cp_r_runs_s"] = [round(r, 2) for r in runs]
    figures["cp_r_s"] = round(statistics.median(runs), 2)
    console.print(f"cp -r: {figures['cp_r_runs_s']} s, median {figures['cp_r_s']} s")
    settle(corpus)
    seconds, _, _ = timed(["sh", "-c", 'cp -r "$0" "$1" && sync -f "$1"', str(corpus),
                           str(base / "copy")])
    figures["cp_r_then_sync_s"] = round(seconds, 2)
    console.print(f"cp -r then sync: {seconds:.1f} s")
    shutil.rmtree(base / "copy")
    figures.update(deid_cost(corpus))

    runs, peaks = [], []
    for attempt in range(args.repeat):
        if attempt:
            shutil.rmtree(base / "import-home")
        env = fresh_home(base, "import-home")
        settle(corpus)
        seconds, status, rss = timed([*NCCID, "images", "import", "--site", "BENCH",
                                      str(corpus)], env=env)
        assert status == 0 and count_records(env) == files, "import did not store every file"
        runs.append(seconds)
        peaks.append(rss)
    seconds = statistics.median(runs)
    figures.update(import_runs_s=[round(r, 2) for r in runs], import_s=round(seconds, 2),
                   import_mb_s=round(mb / seconds, 1), import_peak_rss_mb=max(peaks))
    console.print(f"import: {figures['import_runs_s']} s, median {seconds:.1f} s, "
                  f"peak RSS {max(peaks)} MB")
    seconds, _, _ = timed([*NCCID, "images", "import", "--site", "BENCH", str(corpus)], env=env)
    figures["import_rerun_s"] = round(seconds, 2)
    shutil.rmtree(base / "import-home")

    if not args.skip_anonymizer and args.only != "import":
        anonymizer = Path(sys.executable).parent / "dicom-anonymizer"
        (base / "anon").mkdir()
        settle(corpus)
        seconds, status, rss = timed([str(anonymizer), str(corpus), str(base / "anon")])
        written = len(list((base / "anon").rglob("*")))
        figures.update(dicom_anonymizer_s=round(seconds, 2), dicom_anonymizer_status=status,
                       dicom_anonymizer_files=written)
        console.print(f"dicom-anonymizer: {seconds:.1f} s, {written} files written")
        shutil.rmtree(base / "anon", ignore_errors=True)


def _report(figures: dict, files: int, size: int, console: Console) -> None:
    targets = {}
    if "import_s" in figures:
        cp = figures["cp_r_s"]
        figures["import_vs_cp_r"] = round(figures["import_s"] / cp, 2) if cp else None
        figures["import_vs_cp_r_then_sync"] = round(
            figures["import_s"] / figures["cp_r_then_sync_s"], 2)
        targets["import_within_2x_cp_r"] = (figures["import_vs_cp_r"] is not None
                                            and figures["import_vs_cp_r"] <= 2)
    if "dicom_anonymizer_s" in figures:
        figures["import_speedup_vs_dicom_anonymizer"] = round(
            figures["dicom_anonymizer_s"] / figures["import_s"], 2)
    targets["peak_rss_under_500_mb"] = max(figures.get("import_peak_rss_mb", 0),
                                           figures.get("node_peak_rss_mb", 0)) < 500
    if "dicom_anonymizer_s" in figures:
        targets["import_3x_faster_than_dicom_anonymizer"] = \
            figures["import_speedup_vs_dicom_anonymizer"] >= 3
    if "node_mb_s" in figures:
        targets["node_150_mb_s"] = figures["node_mb_s"] >= 150
    figures["targets"] = targets
    table = Table("figure", "value", title=f"imaging intake ({files} files, {size / 1e9:.2f} GB)")
    for key, value in figures.items():
        if key != "targets":
            table.add_row(key, str(value))
    for key, value in figures["targets"].items():
        table.add_row(f"target: {key}", "met" if value else "NOT met")
    console.print(table)
    (HERE / "output").mkdir(exist_ok=True)
    name = ("imaging-import.json" if "node_mb_s" not in figures else
            "imaging-node.json" if "import_s" not in figures else "imaging.json")
    (HERE / "output" / name).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
