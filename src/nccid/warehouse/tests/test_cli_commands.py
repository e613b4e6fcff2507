"""nccid warehouse catalogue / verify / stats / sync-clinical, in process against the test database."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.warehouse.service import store_image


def _run(*args):
    return CliRunner().invoke(typer_app, ["warehouse", *args])


pytestmark = pytest.mark.django_db(databases=["default", "vault"])  # setup_django checks the key


def test_catalogue_verify_and_stats(site, local_warehouse, make_image):
    stored = [store_image(site, *make_image(i % 3, "DX" if i % 2 else "CT", instance=i)).record
              for i in range(1, 7)]
    result = _run("catalogue")
    assert result.exit_code == 0, result.output
    assert "images" in result.output and "6 new image(s)" in result.output

    result = _run("verify", "--all")
    assert result.exit_code == 0, result.output
    assert "checked 6 image(s): 0 missing, 0 mismatched" in result.output

    local_warehouse.write_atomic(stored[0].storage_key, b"tampered")
    local_warehouse.delete(stored[1].storage_key)
    result = _run("verify", "--all")
    assert result.exit_code == 1
    assert f"mismatch  {stored[0].storage_key}" in result.output
    assert f"missing   {stored[1].storage_key}" in result.output
    assert "checked 6 image(s): 1 missing, 1 mismatched" in result.output

    result = _run("verify", "--sample", "2")
    assert "checked 2 image(s)" in result.output

    store_image(site, *make_image(4, "MR"))
    result = _run("stats")
    assert result.exit_code == 0, result.output
    assert "xray" in result.output and "ct" in result.output
    assert "1 image(s) not yet in the catalogue" in result.output


def test_sync_clinical_rewrites_records(site, local_warehouse, make_image):
    from nccid.clinical.models import ClinicalRecord, Upload

    pseudonym = make_image(5)[0]
    upload = Upload.objects.create(site=site, kind="positive", sha256="1" * 64)
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  cleaned={"age": 70}, digest="d", last_upload=upload)
    result = _run("sync-clinical")
    assert result.exit_code == 0, result.output
    assert "wrote 1 clinical record(s)" in result.output
    (key,) = [k for k in local_warehouse.list() if "/data/" in k]
    assert key.endswith(f"/data/{pseudonym}/positive-RTEST.json")
    assert json.loads(local_warehouse.read(key)) == {"age": 70}


def test_stats_counts_clinical_records_new_or_changed_since_the_refresh(site, local_warehouse,
                                                                        make_image):
    """A sheet of patients without images, or one changing the values filters read, left
    stats saying '0 image(s) not yet in the catalogue' as if nothing were waiting (review 25)."""
    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind="positive", sha256="3" * 64)
    records = [ClinicalRecord.objects.create(site=site, pseudonym=make_image(i)[0], kind="positive",
                                             cleaned={"age": 70 + i}, digest="d", last_upload=upload)
               for i in (1, 2)]
    assert _run("catalogue").exit_code == 0
    assert ("2 clinical record(s); 0 image(s) not yet in the catalogue, 0 clinical record(s) new "
            "or changed since its refresh") in _stats()  # those the refresh read are not waiting

    ClinicalRecord.objects.create(site=site, pseudonym=make_image(3)[0], kind="positive",
                                  cleaned={"age": 60}, digest="d", last_upload=upload)
    records[0].cleaned = {"age": 90}  # a follow-up sheet changing a value
    records[0].save()
    assert ("2 clinical record(s); 0 image(s) not yet in the catalogue, 2 clinical record(s) new "
            "or changed since its refresh") in _stats()


def _stats() -> str:
    result = _run("stats")
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # as one line, however the console wrapped it
