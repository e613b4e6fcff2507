"""Two processes confirming the same upload at once (a double submit reaching two portal
workers) import it once. Runs on the file SQLite database of a fresh NCCID_HOME, as deployed."""

import os
import subprocess
import sys
import time

from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.people import people

PREVIEW = """
import sys
from nccid.cli.common import setup_django
setup_django()
from nccid.accounts.models import Site
from nccid.clinical import services
site = Site.objects.get(code="RRACE")
upload = services.preview_upload(site, "positive", "s.xlsx", open(sys.argv[1], "rb").read(), "tester")
print(upload.pk)
"""

CONFIRM = """
import sys, time
from pathlib import Path
from nccid.cli.common import setup_django
setup_django()
from nccid.clinical import services
from nccid.clinical.models import Upload
upload = Upload.objects.get(pk=int(sys.argv[1]))
print("ready", flush=True)
go = Path(sys.argv[2])
deadline = time.monotonic() + 60
while not go.exists():  # both processes start confirming together
    if time.monotonic() > deadline:
        raise SystemExit("no start signal")
    time.sleep(0.005)
print(services.confirm_upload(upload, "tester").status)
"""

COUNT = """
from nccid.cli.common import setup_django
setup_django()
from nccid.clinical.models import ClinicalRecord, Upload
upload = Upload.objects.get()
print(ClinicalRecord.objects.count(), upload.new_records, upload.status)
"""


def python(code: str, *args: str, **kwargs):
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ), **kwargs)


def run(code: str, *args: str) -> str:
    process = python(code, *args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out.strip()


def test_racing_confirmations_import_once(nccid_home, tmp_path):
    subprocess.run([sys.executable, "-m", "nccid.cli.main", "init"], check=True, capture_output=True,
                   env=dict(os.environ), timeout=120)
    subprocess.run([sys.executable, "-m", "nccid.cli.main", "site", "add", "RRACE", "--name", "Race"],
                   check=True, capture_output=True, env=dict(os.environ), timeout=120)
    sheet = tmp_path / "sheet.xlsx"
    write_sheet("positive", people(200, seed=21), sheet, seed=21)
    upload_id = run(PREVIEW, str(sheet))
    go = tmp_path / "go"
    racers = [python(CONFIRM, upload_id, str(go)) for _ in range(2)]
    for racer in racers:  # wait until both are connected and waiting
        assert racer.stdout.readline().strip() == "ready"
    start = time.monotonic()
    go.touch()
    results = [r.communicate(timeout=120) for r in racers]
    assert time.monotonic() - start < 120
    assert [r.returncode for r in racers] == [0, 0], [err for _, err in results]
    assert [out.strip() for out, _ in results] == ["accepted", "accepted"]
    assert run(COUNT) == "200 200 accepted"
