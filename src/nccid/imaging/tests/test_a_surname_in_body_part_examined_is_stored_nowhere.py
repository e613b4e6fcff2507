"""Body Part Examined (0018,0015) is a code string the profile keeps (the catalogue's body part
column), and sites type free text into it. Only the DICOM standard's defined terms
(``deid/data/defined_terms.json``) are kept, in any case; anything else is emptied, at any
depth, and the import logs how many values were emptied, never which."""

from __future__ import annotations

import json
import logging

import pytest
from pydicom.dataset import Dataset

from nccid.imaging.importer import import_paths
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.leakscan import find_leaks
from nccid.warehouse.models import ImageRecord

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _instance(person, number: int, top: str, nested: str) -> Dataset:
    ds = synthetic_instance(person, study=23, instance=number, patient_id=person.nhs_number,
                            plant=False)
    ds.BodyPartExamined = top
    item = Dataset()
    item.BodyPartExamined = nested
    ds.ViewCodeSequence = [item]
    return ds


def test_a_surname_in_body_part_examined_reaches_no_byte_written_and_terms_pass_in_any_case(
        site, keyring, tmp_path, person_factory, local_warehouse, caplog):
    from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue

    person = person_factory(71)
    surname = person.family_name
    assert len(surname) >= 5  # long enough to scan for
    folder = tmp_path / "in"
    folder.mkdir()
    files = {1: (surname, surname.upper()), 2: ("chest", "Thorax "), 3: (" LUNG", surname)}
    for number, (top, nested) in files.items():
        (folder / f"{number}.dcm").write_bytes(to_bytes(_instance(person, number, top, nested)))

    with caplog.at_level(logging.INFO, logger="nccid.imaging.intake"):
        summary = import_paths([folder], site)
    assert summary.counts["stored"] == 3, summary.rejected
    refresh_catalogue()

    leaks = find_leaks([tmp_path / "warehouse"], [surname])  # objects, header JSON, catalogue
    assert not leaks, leaks
    records = ImageRecord.objects.filter(site=site).order_by("sop_uid")
    assert sorted(r.body_part for r in records) == ["", "LUNG", "chest"]
    nested = []
    for record in records:
        header = json.loads(local_warehouse.read(record.metadata_key))
        top = header["00180015"]
        assert top["vr"] == "CS"  # kept, emptied or not
        nested.append(header["00540220"]["Value"][0]["00180015"].get("Value", [""])[0])
    assert sorted(nested) == ["", "", "Thorax"]
    with connect_catalogue() as con:
        parts = sorted(row[0] for row in con.execute(
            "select body_part from images where pseudonym = ?", [records[0].pseudonym]).fetchall())
    assert parts == ["", "LUNG", "chest"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "3 value(s)" in logged and "3 file(s)" not in logged and "2 file(s)" in logged
    assert surname not in logged and surname.upper() not in logged
