"""A study's status as its site sees it (My uploads, its status filter, GET /api/studies)
depends on that site's own clinical records only: an image of a patient whose only record is
another site's is linked in the warehouse, but its site is told "waiting for clinical record"
(and so asked for its sheet) exactly as for a patient nobody sent, until its own record
arrives. Data managers and administrators see the true state."""

from __future__ import annotations

import pytest

from nccid.accounts.models import ApiToken
from nccid.imaging.intake import ingest
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

ELSEWHERE, NOBODY, OWN = "elsewhere", "nobody", "own"  # whose clinical record names the patient


def _record(site, pseudonym: str) -> None:
    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind="positive", sha256="0" * 64, status="accepted")
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  digest="0" * 64, last_upload=upload)


@pytest.fixture
def sent(site, other_site, keyring) -> dict[str, str]:
    """The site sends one study for each patient: one the other site's record names, one no
    record names, one its own record names. -> the patients' pseudonyms by case."""
    patients = dict(zip((ELSEWHERE, NOBODY, OWN), people(3, seed=23), strict=True))
    names = {case: keyring.pseudonym(person.nhs_number) for case, person in patients.items()}
    _record(other_site, names[ELSEWHERE])
    _record(site, names[OWN])
    for study, (case, person) in enumerate(patients.items(), start=1):
        image = to_bytes(synthetic_instance(person, patient_id=person.nhs_number, study=study))
        assert ingest(image, site, "test").status is IngestStatus.STORED, case
    return names


def _my_uploads(client, user, site, status: str = "") -> dict[str, str]:
    client.force_login(user)
    page = client.get(f"/uploads/?site={site.code}&status={status}")
    return {row["who"]: row["status_code"] for row in page.context["study_rows"]}


def _status_counts(client, user, site) -> dict[str, int]:
    client.force_login(user)
    page = client.get(f"/uploads/?site={site.code}")
    return {s["code"]: s["count"] for s in page.context["statuses"]}


def _api(client, user) -> dict[str, str]:
    token = ApiToken.issue(user, "job")[1]
    answer = client.get("/api/studies", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 200
    return {study["patient"]: study["status"] for study in answer.json()}


VIEWS = {"my uploads": _my_uploads, "api": lambda client, user, site: _api(client, user)}


@pytest.mark.parametrize("view", VIEWS)
def test_the_site_sees_waiting_unless_its_own_record_names_the_patient(client, site, sent,
                                                                      make_user, view):
    seen = VIEWS[view](client, make_user("uploader", site), site)
    assert seen == {sent[ELSEWHERE]: "waiting", sent[NOBODY]: "waiting", sent[OWN]: "stored"}


@pytest.mark.parametrize("role", ["data-manager", "admin"])
@pytest.mark.parametrize("view", VIEWS)
def test_data_managers_see_the_true_state(client, site, sent, make_user, role, view):
    seen = VIEWS[view](client, make_user(role), site)
    assert seen == {sent[ELSEWHERE]: "stored", sent[NOBODY]: "waiting", sent[OWN]: "stored"}


def test_the_status_filter_and_its_counts_follow_what_each_is_shown(client, site, sent,
                                                                   make_user):
    uploader, manager = make_user("uploader", site), make_user("data-manager")
    assert _status_counts(client, uploader, site) == {"waiting": 2, "stored": 1}
    assert set(_my_uploads(client, uploader, site, "waiting")) == {sent[ELSEWHERE], sent[NOBODY]}
    assert set(_my_uploads(client, uploader, site, "stored")) == {sent[OWN]}
    assert _status_counts(client, manager, site) == {"waiting": 1, "stored": 2}
    assert set(_my_uploads(client, manager, site, "waiting")) == {sent[NOBODY]}


def test_the_sites_own_record_arriving_shows_the_study_linked(client, site, sent, make_user):
    _record(site, sent[ELSEWHERE])
    seen = _my_uploads(client, make_user("uploader", site), site)
    assert seen[sent[ELSEWHERE]] == "stored" and seen[sent[NOBODY]] == "waiting"
