"""A clinical record whose JSON was never written (an import killed before its writer ran, or
a store that was down) is found by ``nccid warehouse verify``, which names the repair."""

from __future__ import annotations

import pytest

from nccid.clinical.signals import AcceptedRecord
from nccid.warehouse.service import (
    clinical_records_without_json,
    sync_clinical,
    write_clinical_records,
)

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _record(site, pseudonym: str):
    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind="positive", sha256="1" * 64)
    return ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                         cleaned={"age": 70}, digest="d", last_upload=upload)


def test_records_without_json_are_counted_until_sync_clinical_writes_them(site, local_warehouse):
    written = _record(site, "NCCID-AAAAAAAAAAAA")
    write_clinical_records(site, [AcceptedRecord(pseudonym=written.pseudonym, hospital_hash="",
                                                 kind="positive", cleaned={"age": 70})])
    assert clinical_records_without_json() == 0
    _record(site, "NCCID-BBBBBBBBBBBB")  # committed; its writer never ran (no set row either)
    assert clinical_records_without_json() == 1
    sync_clinical()
    assert clinical_records_without_json() == 0


def test_verify_reports_them_and_fails(site, local_warehouse):
    from typer.testing import CliRunner

    from nccid.cli.main import typer_app

    _record(site, "NCCID-CCCCCCCCCCCC")
    result = CliRunner().invoke(typer_app, ["warehouse", "verify", "--all"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "1 clinical record(s) have no JSON in the warehouse" in text
    assert "run 'nccid warehouse sync-clinical'" in text
    sync_clinical()
    assert CliRunner().invoke(typer_app, ["warehouse", "verify", "--all"]).exit_code == 0
