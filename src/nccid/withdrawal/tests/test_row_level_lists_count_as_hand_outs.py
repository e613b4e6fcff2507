"""A cohort's image list (pseudonyms, sites, dates, UIDs) hands data to a researcher: the API's
``/cohort/list`` and ``nccid research cohort --list`` are audited ``research.list`` and a
withdrawal names them among the hand-outs; a count alone is not one."""

from __future__ import annotations

import pytest
from ninja.testing import TestClient
from typer.testing import CliRunner

from nccid.accounts.models import ApiToken
from nccid.research import api
from nccid.warehouse.catalogue import refresh_catalogue
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.withdrawal.services import holdings

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def catalogued(patients):
    for patient in patients:
        PatientSet.objects.filter(pseudonym=patient.pseudonym).update(set_name="training")
        ImageRecord.objects.filter(pseudonym=patient.pseudonym).update(set_name="training")
    refresh_catalogue()
    return patients


def _hand_outs(pseudonym: str) -> list[tuple[str, str]]:
    return [(h.username, h.action) for h in holdings(pseudonym).handed_out]


def test_an_api_list_is_a_hand_out_and_a_count_is_not(catalogued, make_user):
    patient = catalogued[0]
    researcher = make_user("researcher")
    _, token = ApiToken.issue(researcher, "test")
    client = TestClient(api.router)
    headers = {"Authorization": f"Bearer {token}"}

    assert client.post("/cohort/count", json={}, headers=headers).status_code == 200
    assert _hand_outs(patient.pseudonym) == []
    page = client.post("/cohort/list?limit=10", json={}, headers=headers)
    assert page.status_code == 200 and patient.pseudonym in page.text

    assert _hand_outs(patient.pseudonym) == [(researcher.username, "research.list")]


def test_a_cli_list_is_a_hand_out_and_a_count_is_not(catalogued, make_user):
    from nccid.cli.main import typer_app

    patient = catalogued[0]
    researcher = make_user("researcher")
    counted = CliRunner().invoke(typer_app, ["research", "cohort", "--user", researcher.username])
    assert counted.exit_code == 0, counted.output
    assert _hand_outs(patient.pseudonym) == []
    listed = CliRunner().invoke(typer_app, ["research", "cohort", "--user", researcher.username,
                                            "--list", "--json"])
    assert listed.exit_code == 0 and patient.pseudonym in listed.stdout, listed.output

    assert _hand_outs(patient.pseudonym) == [(researcher.username, "research.list")]
