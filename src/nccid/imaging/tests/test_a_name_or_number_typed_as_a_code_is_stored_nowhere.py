"""A site's free-text "code" typed at the modality (a patient's name, an NHS number however
written) in a code item the profile keeps: Requested Procedure Code Sequence (depth 2), a
view's modifiers (depth 3). The import used to store Code Value, Long Code Value and URN Code
Value as sent, into the file and its header JSON, and ``nccid deid check`` on the warehouse
then reported them. Now neither holds them, ordinary codes stay, and the check is clean."""

from __future__ import annotations

import json

import pytest
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.imaging.importer import import_paths
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.leakscan import find_leaks
from nccid.warehouse.models import ImageRecord

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _instance(person, number: int) -> Dataset:
    ds = synthetic_instance(person, study=29, instance=number, patient_id=person.nhs_number,
                            plant=False)
    spaced = f"{person.nhs_number[:3]} {person.nhs_number[3:6]} {person.nhs_number[6:]}"
    named = _code(f"{person.family_name.upper()}^J", "99LOCAL", "Chest X-ray")
    ds.RequestedProcedureCodeSequence = [_code(person.nhs_number, "99LOCAL", "XR CHEST PA"),
                                         _code("36643-5", "LN", "XR CHEST PA"), named]
    long_code = _code("", "99LOCAL", "Posteroanterior")
    del long_code.CodeValue
    long_code.LongCodeValue = spaced
    view = _code("R-10214", "SRT", "lateral")
    view.ViewModifierCodeSequence = [long_code, _code("R-102CD", "SRT", "Posteroanterior")]
    ds.ViewCodeSequence = [view]
    return ds


def test_a_name_or_number_in_a_kept_code_reaches_no_byte_written_and_the_check_is_clean(
        site, keyring, tmp_path, person_factory, local_warehouse):
    person = person_factory(73)
    folder = tmp_path / "in"
    folder.mkdir()
    for number in (1, 2):
        (folder / f"{number}.dcm").write_bytes(to_bytes(_instance(person, number)))

    summary = import_paths([folder], site)
    assert summary.counts["stored"] == 2, summary.rejected

    warehouse = tmp_path / "warehouse"
    assert not find_leaks([warehouse], [person.family_name, person.nhs_number])
    assert not find_leaks([warehouse], [person.nhs_number[3:6] + " " + person.nhs_number[6:]])
    for record in ImageRecord.objects.filter(site=site):
        header = json.loads(local_warehouse.read(record.metadata_key))
        requested = [(i["00080100"]["Value"][0], i["00080104"]["Value"][0])
                     for i in header["00321064"]["Value"]]
        assert requested == [("REMOVED", "XR CHEST PA"), ("36643-5", "XR CHEST PA"),
                             ("REMOVED", "Chest X-ray")]
        modifiers = header["00540220"]["Value"][0]["00540222"]["Value"]
        assert modifiers[0]["00080119"] == {"vr": "UC", "Value": ["REMOVED"]}
        assert modifiers[1]["00080100"] == {"vr": "SH", "Value": ["R-102CD"]}

    checked = CliRunner().invoke(typer_app, ["deid", "check", str(warehouse)])
    assert checked.exit_code == 0, checked.output
    assert "0 finding(s)" in checked.output
