"""``nccid images held``: what waits for a data manager's review, per site or one by one,
without a patient's identifiers, and only while it waits."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nccid.imaging.intake import ingest
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _held(person, site, modality: str = "CR") -> None:
    burned = synthetic_instance(person, modality=modality, patient_id=person.nhs_number)
    burned.BurnedInAnnotation = "YES"
    assert ingest(to_bytes(burned), site, "test").status is IngestStatus.HELD


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables as wide as their rows, so that no cell is wrapped in the output read here."""
    from nccid.cli.common import console

    monkeypatch.setattr(console, "width", 200)


def _images_held(*args: str):
    from nccid.cli.main import typer_app

    return CliRunner().invoke(typer_app, ["images", "held", *args])


def test_held_images_are_counted_per_site_and_listed_for_one(site, other_site, keyring,
                                                             person_factory):
    a, b, c = person_factory(71), person_factory(72), person_factory(73)
    _held(a, site)
    _held(b, site, modality="DX")
    _held(c, other_site)

    counts = _images_held()
    assert counts.exit_code == 0, counts.output
    rows = {line.split()[1]: line.split()[3] for line in counts.output.splitlines()
            if line.startswith("│") and line.split()[1] in ("RTEST", "OTHER")}
    assert rows == {"RTEST": "2", "OTHER": "1"}

    listed = _images_held("--site", "rtest")
    assert listed.exit_code == 0, listed.output
    assert "Held for review at RTEST" in listed.output
    assert "CR" in listed.output and "DX" in listed.output
    assert listed.output.count("Burned In Annotation") == 2
    assert keyring.pseudonym(a.nhs_number) in listed.output
    for person in (a, b):  # no identifier of the patient is shown
        for value in (person.nhs_number, person.family_name, person.hospital_number):
            assert value not in listed.output


def test_no_held_images_and_an_unknown_site_are_said_plainly(site, keyring, person_factory):
    assert "No images are held for review." in _images_held().output
    assert "No images are held for review." in _images_held("--site", "RTEST").output
    unknown = _images_held("--site", "NOPE")
    assert unknown.exit_code != 0
    assert "no site with code 'NOPE'" in str(unknown.exception) + unknown.output


def test_a_decided_image_is_no_longer_listed(site, keyring, person_factory, make_user):
    from nccid.imaging.services import held_images, reject_held

    _held(person_factory(74), site)
    manager = make_user("data-manager")
    reject_held(held_images(site).get(), manager, reason="name burned into the corner")
    assert "No images are held for review." in _images_held("--site", "RTEST").output
