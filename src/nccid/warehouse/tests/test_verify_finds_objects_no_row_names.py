"""Databases restored from a backup older than the warehouse leave later patients' images,
headers and clinical JSON in the warehouse with no row naming them: researchers never see them
and nothing else would tell. ``nccid warehouse verify --all`` counts them by patient and says
what to do; a sample check does not list the whole store."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nccid.clinical.signals import AcceptedRecord
from nccid.warehouse.catalogue import refresh_catalogue
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.warehouse.service import objects_no_row_names, store_image, write_clinical_records

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _verify(*args: str):
    from nccid.cli.main import typer_app

    result = CliRunner().invoke(typer_app, ["warehouse", "verify", *args])
    return result.exit_code, " ".join(result.output.split())


def _a_patient_the_database_forgot(site, make_image) -> str:
    """Two images and a clinical JSON stored, then every row naming them gone, as in a
    database restored from before they arrived."""
    pseudonym = ""
    for instance in (1, 2):
        pseudonym, data, meta = make_image(3, instance=instance)
        store_image(site, pseudonym, data, meta)
    write_clinical_records(site, [AcceptedRecord(pseudonym=pseudonym, hospital_hash="",
                                                 kind="positive", cleaned={"age": 70})])
    ImageRecord.objects.filter(pseudonym=pseudonym).delete()
    PatientSet.objects.filter(pseudonym=pseudonym).delete()
    return pseudonym


def test_objects_no_row_names_are_counted_by_patient(site, make_image, local_warehouse):
    kept, data, meta = make_image(0)
    store_image(site, kept, data, meta)  # named by its row: not counted
    forgotten = _a_patient_the_database_forgot(site, make_image)

    assert objects_no_row_names() == {forgotten: 5}  # 2 images, 2 headers, 1 clinical JSON


def test_verify_all_names_them_and_fails(site, make_image, local_warehouse):
    forgotten = _a_patient_the_database_forgot(site, make_image)
    refresh_catalogue()

    code, text = _verify("--all")

    assert code == 1
    assert (f"5 object(s) in the warehouse are named by no database row, of 1 patient(s) "
            f"({forgotten}: 5)") in text
    assert "'nccid patient withdraw PSEUDONYM' removes them" in text
    code, text = _verify("--sample", "10")  # a sample does not list the whole store
    assert code == 0 and "named by no database row" not in text
