"""Fixtures of the withdrawal tests: two patients with images and clinical records, and a
data manager."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from nccid.clinical.tests.helpers import sheet_of
from nccid.config import reset_settings_cache
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


@pytest.fixture(params=["retain-dates", "shift-dates"])  # (asked for before the scenario)
def profile(request, local_warehouse, monkeypatch):
    monkeypatch.setenv("NCCID_DEID_PROFILE", request.param)
    reset_settings_cache()
    yield request.param
    monkeypatch.delenv("NCCID_DEID_PROFILE")
    reset_settings_cache()


@pytest.fixture
def typo(site, other_site, make_user, keyring, local_warehouse):
    """The reviewer's scenario: the real patient is in validation (the other site's), the
    site's typo patient in training, with two studies sent by hospital number."""
    from nccid.imaging.linking import link_known

    real, other = people(2, seed=31)
    typed = replace(real, nhs_number=other.nhs_number)  # the same row, a wrong valid number
    site.split_rule, other_site.split_rule = "training", "validation"
    site.save()
    other_site.save()
    at_other = replace(real, hospital_number="OTH" + real.hospital_number[-6:])
    send_sheet(other_site, make_user("uploader", other_site), [at_other])
    assert {o.status for o in send_images(other_site, at_other, study=9)} == {"stored"}
    uploader = make_user("uploader", site)
    assert {o.status for o in send_images(site, real, study=1, by_nhs_number=False)} == {"pending"}
    send_sheet(site, uploader, [typed])  # links the number to the typo patient
    link_known()  # (the linking pass an upload's commit starts; a test's transaction never commits)
    corrected = send_sheet(site, uploader, [real])
    assert any("nccid patient relink" in w for w in corrected.sheet_warnings)
    assert {o.status for o in send_images(site, real, study=2, by_nhs_number=False)} == {"stored"}
    return real, keyring.pseudonym(real.nhs_number), keyring.pseudonym(other.nhs_number)
