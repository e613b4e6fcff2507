"""Fixtures of the withdrawal tests: two patients with images and clinical records, and a
data manager."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nccid.clinical.tests.helpers import sheet_of
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

PEOPLE = people(6, seed=11)


def keys_but_markers(warehouse) -> list[str]:
    """Every key of ``warehouse`` but the withdrawal markers (``withdrawn/<pseudonym>.json``),
    which name a withdrawn patient by design (``nccid.withdrawal.markers``)."""
    from nccid.warehouse.layout import WITHDRAWN_PREFIX

    return [key for key in warehouse.list("") if not key.startswith(f"{WITHDRAWN_PREFIX}/")]


@pytest.fixture
def manager(make_user):
    return make_user("data-manager")


@dataclass
class Patient:
    person: object
    pseudonym: str
    sop_uids: list[str]


def send_images(site, person, *, count: int = 3, study: int = 1, by_nhs_number: bool = True,
                modality: str = "CT"):
    """``count`` images of one study of ``person`` through intake; their outcomes."""
    from nccid.imaging.intake import ingest_many

    # planted identifiers include the NHS number in Other Patient IDs: not when it must not be found
    items = [to_bytes(synthetic_instance(person, modality=modality, study=study, instance=i,
                                         patient_id=person.nhs_number if by_nhs_number else None,
                                         plant=by_nhs_number))
             for i in range(1, count + 1)]
    return ingest_many(items, site, "test")


def send_sheet(site, user, persons, kind: str = "positive", age: int = 50):
    """A positive sheet for ``persons`` through the clinical intake (checked and confirmed)."""
    from nccid.clinical.services import confirm_upload, preview_upload

    upload = preview_upload(site, kind, "sheet.xlsx",
                            sheet_of(kind, [{"age": age, "sex": 1}] * len(persons), persons), user)
    if upload.status == "preview":
        upload = confirm_upload(upload, user)
    return upload


@pytest.fixture
def patients(request, site, keyring, make_user):
    """Two patients of ``site``: each with a clinical record and a study of three images, in
    the test's warehouse (``backend`` if it asks for it, else a local one: root conftest)."""
    request.getfixturevalue("backend" if "backend" in request.fixturenames else "local_warehouse")
    uploader = make_user("uploader", site)
    made = []
    send_sheet(site, uploader, PEOPLE[:2])
    for index, person in enumerate(PEOPLE[:2]):
        outcomes = send_images(site, person, study=index + 1)
        assert {o.status for o in outcomes} == {"stored"}, outcomes
        made.append(Patient(person, keyring.pseudonym(person.nhs_number),
                            [o.sop_uid for o in outcomes]))
    return made
