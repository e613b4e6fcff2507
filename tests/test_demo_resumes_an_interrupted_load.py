"""An interrupted first `nccid init --demo` (Ctrl-C during the first `make run`) is finished by
the next run, and a finished demo is left as is.

Each run is a process of its own in a fresh NCCID_HOME. The interruption is deterministic: the
first run is `initialise(demo=True)` with one step of the load raising KeyboardInterrupt half way
through the second site's images."""

from __future__ import annotations

import json
import os
import subprocess
import sys

INTERRUPTED_RUN = """
from nccid import demo
from nccid.cli.system import initialise

send_images = demo._send_images

def interrupted(site, person, index, use_nhs):
    if site.code == "NTH" and index == 5:
        raise KeyboardInterrupt
    send_images(site, person, index, use_nhs)

demo._send_images = interrupted
initialise(demo=True)
"""

COUNTS = """
import json
from nccid.cli.common import setup_django
setup_django()
from nccid.clinical.models import ClinicalRecord, Upload
from nccid.imaging.models import HeldImage, PendingImage
from nccid.warehouse.catalogue import catalogue_counts
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import uncatalogued_images
print(json.dumps({"uploads": Upload.objects.count(), "clinical": ClinicalRecord.objects.count(),
                  "images": ImageRecord.objects.count(), "pending": PendingImage.objects.count(),
                  "held": HeldImage.objects.count(), "uncatalogued": uncatalogued_images(),
                  "catalogue": catalogue_counts()}))
"""

# The demo's full size: 3 sites x 3 sheets; 30 patients' clinical records a site plus 8 ISARIC
# ones; each site's images (stored, waiting for a record, or held for review).
COMPLETE = {"uploads": 9, "clinical": 114, "images": 294, "pending": 6, "held": 3}


def python(home, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL")}
    env["NCCID_HOME"] = str(home)
    return subprocess.run([sys.executable, *code], env=env, capture_output=True, text=True,
                          timeout=900)


def counts(home) -> dict:
    result = python(home, ["-c", COUNTS])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def init_demo(home) -> subprocess.CompletedProcess:
    result = python(home, ["-m", "nccid.cli.main", "init", "--demo"])
    assert result.returncode == 0, result.stderr
    return result


def test_an_interrupted_demo_load_is_finished_by_the_next_run_and_then_left_alone(tmp_path):
    home = tmp_path / "home"
    first = python(home, ["-c", INTERRUPTED_RUN])
    assert first.returncode != 0 and "KeyboardInterrupt" in first.stderr
    partial = counts(home)
    assert 0 < partial["images"] < COMPLETE["images"] and partial["uploads"] < COMPLETE["uploads"]
    assert partial["catalogue"].get("images", 0) == 0  # the refresh never ran

    second = init_demo(home)
    assert "Finishing the synthetic demo load" in second.stdout
    finished = counts(home)
    assert {k: finished[k] for k in COMPLETE} == COMPLETE
    assert finished["uncatalogued"] == 0
    assert finished["catalogue"]["images"] == COMPLETE["images"]
    assert finished["catalogue"]["clinical"] == COMPLETE["clinical"]
    cohort = python(home, ["-m", "nccid.cli.main", "research", "cohort", "--user", "researcher"])
    assert cohort.returncode == 0 and not cohort.stdout.startswith("0 patients"), cohort.stdout

    third = init_demo(home)
    assert "Loading" not in third.stdout and "Finishing" not in third.stdout
    assert "Demo accounts" in third.stdout
    assert counts(home) == finished  # the same rows, the same catalogue version
