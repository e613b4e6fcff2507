"""Benchmark: the summary page at 50 concurrent users against 1,000,000 catalogued images.

Target: p95 under 200 ms. Builds a throwaway NCCID_HOME (SQLite), bulk-loads the image and
clinical tables, starts the real server (`nccid serve`, gunicorn), signs in through the login
form, and loads /summary/ with wrk (50 connections) carrying the session cookie. Also times
the first full count and an incremental update after new images arrive.

    .venv/bin/python -m bench.bench_portal            # 1,000,000 images, 30 s of load
    .venv/bin/python -m bench.bench_portal --small    # 100,000 images, 10 s of load
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent
TARGET_P95_MS = 200.0
PASSWORD = "Quartz-Lantern-Meadow-41"
SITES = 25
USERS = {"uploader": 35, "data-manager": 10, "researcher": 5}  # 50 distinct signed-in users
WRK_SCRIPT = """
local cookies = {}
for line in io.lines("%(cookies)s") do cookies[#cookies + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", nil, {["Cookie"] = cookies[(n %% #cookies) + 1]})
end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\\"p50\\":%%f,\\"p95\\":%%f,\\"p99\\":%%f,\\"max\\":%%f,"
    .. "\\"requests\\":%%d,\\"seconds\\":%%f,\\"non2xx\\":%%d,\\"errors\\":%%d}\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def _setup_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="nccid-bench-portal-"))
    os.environ["NCCID_HOME"] = str(home)
    for name in ("DATABASE_URL", "VAULT_DATABASE_URL"):
        os.environ.pop(name, None)
    from nccid.cli.system import initialise

    initialise(quiet=True)
    return home


def _load(images: int, seed: int = 1) -> dict:
    """Bulk-load ``images`` image rows (~3 per study, ~3 studies per patient) and clinical rows."""
    from django.db import connection, transaction

    from nccid.accounts.models import Site
    from nccid.accounts.services import add_user
    from nccid.clinical.models import ClinicalRecord, Upload
    from nccid.warehouse.models import ImageRecord

    sites = [Site.objects.create(code=f"S{i:03d}", name=f"Bench Hospital {i}") for i in range(SITES)]
    for role, count in USERS.items():
        for i in range(count):
            add_user(f"{role[:2]}{i:02d}", role, PASSWORD,
                     sites[i % SITES].code if role == "uploader" else None)
    rng = random.Random(seed)
    modalities = ["DX"] * 5 + ["CR"] * 2 + ["CT"] * 2 + ["MR"]
    start = datetime(2020, 3, 1, tzinfo=UTC)
    fields = [f for f in ImageRecord._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {ImageRecord._meta.db_table} ({columns}) VALUES ({marks})"
    n_patients = max(1, images // 9)
    defaults = {f.column: ("" if not f.null else None) for f in fields}

    def rows(lo: int, hi: int):
        for i in range(lo, hi):
            study = i // 3
            patient = study // 3 % n_patients
            modality = modalities[study % len(modalities)]
            row = dict(defaults)
            row.update(
                sop_uid=f"2.25.1{i}", study_uid=f"2.25.2{study}", series_uid=f"2.25.3{study}",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", pseudonym=f"NCCID-B{patient:015d}",
                site_id=sites[patient % SITES].pk, set_name="validation" if patient % 5 == 0 else "training",
                modality=modality, folder={"CT": "ct", "MR": "mri"}.get(modality, "xray"),
                storage_key=f"k/{i}.dcm", metadata_key=f"k/{i}.json", size=rng.randrange(10**5, 10**7),
                sha256=f"{i:064x}", received_at=(start + timedelta(minutes=i // 2)).isoformat(),
                linked=True, rows=2048, columns=2048)
            yield tuple(row[f.column] for f in fields)

    chunk = 50_000
    with transaction.atomic(), connection.cursor() as cursor:
        for lo in range(0, images, chunk):
            cursor.executemany(sql, list(rows(lo, min(images, lo + chunk))))
    upload = Upload.objects.create(site=sites[0], kind="positive", sha256="0" * 64, status="accepted")
    clinical = [ClinicalRecord(site=sites[p % SITES], pseudonym=f"NCCID-B{p:015d}", kind="positive",
                               cleaned={"age": 20 + p % 70, "sex": "Male" if p % 2 else "Female"},
                               digest="0" * 64, last_upload=upload)
                for p in range(0, int(n_patients * 1.1), 1)]
    ClinicalRecord.objects.bulk_create(clinical, batch_size=5000)
    if connection.vendor == "sqlite":  # the maintenance a bulk load is followed by
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.execute("ANALYZE")
    return {"patients": n_patients, "clinical_records": len(clinical)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nccid serve exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)  # polling interval of a bounded wait
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def _login(base: str, username: str) -> str:
    """Sign in through the real login form; returns the Cookie header for wrk."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"username": username, "password": PASSWORD,
                                   "csrfmiddlewaretoken": token}).encode()
    request = urllib.request.Request(base + "/login/", data=body, headers={"Referer": base + "/login/"})
    opener.open(request).read()
    cookies = {c.name: c.value for c in jar}
    if "sessionid" not in cookies:
        raise RuntimeError("login failed: no session cookie")
    page = opener.open(base + "/summary/")
    if page.status != 200 or "Studies received (CT)" not in page.read().decode():
        raise RuntimeError("the summary page did not render for the signed-in user")
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def _wrk(url: str, cookies: list[str], seconds: int, connections: int, home: Path) -> dict:
    """wrk with ``connections`` connections, each request carrying the next user's session."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (see scripts/system-deps.sh)")
    (home / "cookies.txt").write_text("\n".join(cookies) + "\n")
    script = home / "summary.lua"
    script.write_text(WRK_SCRIPT % {"cookies": home / "cookies.txt"})
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
         url], capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("JSON{") + 4:].splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_portal")
    parser.add_argument("--small", action="store_true", help="100,000 images and 10 s of load")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--connections", type=int, default=50)
    # gunicorn's advice: (2 x cores) + 1 workers.
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    images = args.images or (100_000 if args.small else 1_000_000)
    seconds = args.seconds or (10 if args.small else 30)
    home = _setup_home()

    t0 = time.perf_counter()
    loaded = _load(images)
    load_s = time.perf_counter() - t0

    from nccid.portal import summary

    t0 = time.perf_counter()
    first = summary.get_summary(max_age=0)
    full_count_s = time.perf_counter() - t0
    assert first.images == images, (first.images, images)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, NCCID_HOME=str(home))
    log = open(home / "serve.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "nccid.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(args.workers), "--threads", str(args.threads)],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(base + "/login/", server)
        cookies = [_login(base, f"{role[:2]}{i:02d}") for role, n in USERS.items() for i in range(n)]
        load = _wrk(base + "/summary/", cookies, seconds, args.connections, home)
        # New images arrive while the server runs: the next view adds only those rows.
        _load_more = _more_images(10_000, images)
        t0 = time.perf_counter()
        after = summary.get_summary(max_age=0)
        increment_s = time.perf_counter() - t0
        assert after.images == images + _load_more
        assert after == summary.recount()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    result = {
        "images": images, "patients": loaded["patients"], "clinical_records": loaded["clinical_records"],
        "sites": SITES, "signed_in_users": len(cookies), "connections": args.connections, "seconds": round(load["seconds"], 1),
        "server": f"nccid serve (gunicorn gthread, {args.workers} workers x {args.threads} threads), SQLite",
        "requests": load["requests"], "requests_per_s": round(load["requests"] / load["seconds"], 1),
        "p50_ms": round(load["p50"], 1), "p95_ms": round(load["p95"], 1),
        "p99_ms": round(load["p99"], 1), "max_ms": round(load["max"], 1),
        "non_2xx": load["non2xx"], "socket_errors": load["errors"],
        "target_p95_ms": TARGET_P95_MS, "meets_target": load["p95"] < TARGET_P95_MS and not load["non2xx"],
        "bulk_load_s": round(load_s, 1), "first_full_count_s": round(full_count_s, 2),
        "increment_10000_images_s": round(increment_s, 3),
    }
    _print(result)
    (HERE / "output").mkdir(exist_ok=True)
    (HERE / "output" / "portal.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(home, ignore_errors=True)
    return 0 if result["meets_target"] else 1


def _more_images(count: int, offset: int) -> int:
    from django.db import connection, transaction

    from nccid.accounts.models import Site
    from nccid.warehouse.models import ImageRecord

    site = Site.objects.first()
    now = datetime.now(UTC)
    rows = [ImageRecord(sop_uid=f"2.25.9{offset + i}", study_uid=f"2.25.8{(offset + i) // 3}",
                        series_uid="2.25.7", sop_class_uid="1.2", pseudonym=f"NCCID-N{i // 9:015d}",
                        site=site, set_name="training", modality="CT", folder="ct", storage_key="k",
                        metadata_key="k", size=1, sha256="0", received_at=now)
            for i in range(count)]
    with transaction.atomic():
        ImageRecord.objects.bulk_create(rows, batch_size=2000)
    connection.close()
    return count


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("figure", "value", title="portal: summary page under load")
    for key, value in result.items():
        table.add_row(key, str(value))
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
