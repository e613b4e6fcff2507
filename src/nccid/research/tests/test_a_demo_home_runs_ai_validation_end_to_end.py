"""On the demo ('nccid init --demo', what 'make run' loads), AI validation runs end to end with
the system's own commands: the data manager exports the validation images, a product's
predictions name the exported IDs, and 'nccid validate' reports on them."""

import csv
import io
import os
import subprocess
import sys
import zipfile


def nccid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nccid.cli.main", *args], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ))


def test_a_demo_home_reports_on_predictions_for_its_exported_validation_images(nccid_home, tmp_path):
    assert (loaded := nccid("init", "--demo")).returncode == 0, loaded.stderr
    exported = nccid("validation-images", "--user", "data.manager", "-o", str(tmp_path / "v.zip"))
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(tmp_path / "v.zip") as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("images.csv").decode())))
    patients = sorted({r["pseudonym"] for r in rows})
    files = {"patients.csv": "pseudonym,score\n" + "".join(
                 f"{p},{n / len(patients):.3f}\n" for n, p in enumerate(patients)),
             "images.csv": "sop_instance_uid,score\n" + "".join(
                 f"{r['sop_instance_uid']},{n / len(rows):.3f}\n" for n, r in enumerate(rows))}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        report = tmp_path / f"{name}.html"
        scored = nccid("validate", str(tmp_path / name), "--user", "data.manager", "-o", str(report))
        assert scored.returncode == 0, scored.stderr  # not "too few patients to report on"
        assert scored.stdout.startswith("AUC ") and "ROC curve" in report.read_text()
