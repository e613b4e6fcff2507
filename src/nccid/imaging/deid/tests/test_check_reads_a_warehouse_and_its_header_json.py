"""'nccid deid check' on a warehouse, local or S3 (``--warehouse``, an s3:// URL): every stored
image and the header JSON beside it are checked, through the same store the rest uses. What an
older release stored is found in both: a surname in Body Part Examined (no defined term) and a
Slice Thickness of 1e400 written as ``Infinity`` (not strict JSON). Other objects (catalogue,
clinical JSON) are skipped."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.imaging.deid.check import NOT_FINITE, check_store
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.dicom_json import header_json

FLAGGED = "training/xray/P1/2.25.11/2.25.12/2.25.13"
NOT_STRICT = "training/xray/P2/2.25.21/2.25.22/2.25.23"


def _stored(deid, kr, person, body_part: str) -> bytes:
    """A de-identified file as an older release stored it, with ``body_part`` kept."""
    out, _ = deid.deidentify_bytes(to_bytes(synthetic_instance(person, plant=False)),
                                   pseudonym=kr.pseudonym(person.nhs_number))
    ds = dcmread(DicomBytesIO(out))
    ds.BodyPartExamined = body_part
    return to_bytes(ds)


def _header(key: str) -> str:
    return key.replace("/xray/", "/xray-metadata/", 1) + ".json"


def _fill(store, deid, kr) -> None:
    first, second = people(2, seed=9)
    flagged = _stored(deid, kr, first, "SMITHJOHN")
    store.write_atomic(f"{FLAGGED}.dcm", flagged)
    store.write_atomic(_header(FLAGGED), header_json(flagged))
    clean = _stored(deid, kr, second, "CHEST")
    store.write_atomic(f"{NOT_STRICT}.dcm", clean)
    body = json.loads(header_json(clean))
    body["00180050"] = {"vr": "DS", "Value": [math.inf]}  # as the writer before strict JSON did
    store.write_atomic(_header(NOT_STRICT), json.dumps(body).encode())
    store.write_atomic("catalogue/state.json", b'{"version": 1}')
    store.write_atomic("training/data/P1/positive-RTH.json", b'{"age": 63}')


def _where(findings) -> set[tuple[str, str, bool]]:
    return {(f.file, f.tag, f.reason == NOT_FINITE) for f in findings}


def test_the_warehouse_is_checked_images_and_header_json(backend, deid, kr):
    _fill(backend, deid, kr)
    findings, scanned, skipped = check_store(backend, backend.list(), profile="retain-dates")
    assert (scanned, skipped) == (4, 2)
    assert _where(findings) == {
        (f"{FLAGGED}.dcm", "(0018,0015)", False),
        (_header(FLAGGED), "(0018,0015)", False),
        (_header(NOT_STRICT), "(0018,0050)", True),
    }

    cli = CliRunner().invoke(typer_app, ["deid", "check", "--warehouse", "--profile",
                                         "retain-dates"])
    assert cli.exit_code == 1, cli.output
    summary = " ".join(cli.output.split())
    assert "4 DICOM or header JSON file(s) checked, 2 other file(s) skipped, 3 finding(s)" in summary
    if not backend.is_local:  # a URL names the same store, with the settings' credentials
        url = CliRunner().invoke(typer_app, ["deid", "check", backend.url, "--profile", "any"])
        assert url.exit_code == 1 and "4 DICOM or header JSON file(s) checked" in url.output
    # The real entry point, where Django is not set up (CliRunner runs inside pytest's).
    real = subprocess.run([sys.executable, "-m", "nccid.cli.main", "deid", "check", "--warehouse",
                           "--profile", "retain-dates"], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    assert real.returncode == 1 and "3 finding(s)" in real.stdout, real.stderr


def test_a_header_json_file_in_a_folder_is_checked_too(tmp_path, deid, kr):
    _, person = people(2, seed=9)
    body = json.loads(header_json(_stored(deid, kr, person, "CHEST")))
    body["00280030"] = {"vr": "DS", "Value": [0.5, math.nan]}
    (tmp_path / "h.json").write_text(json.dumps(body))
    cli = CliRunner().invoke(typer_app, ["deid", "check", str(tmp_path), "--profile", "any"])
    assert cli.exit_code == 1 and "(0028,0030)" in cli.output


def test_neither_paths_nor_warehouse_is_refused():
    cli = CliRunner().invoke(typer_app, ["deid", "check"])
    assert cli.exit_code != 0 and "--warehouse" in str(cli.exception)
