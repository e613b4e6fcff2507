"""Researchers learn which patients were withdrawn and which studies removed from their sets,
so they can delete them from copies made earlier: by the API and the CLI, training set only."""

from __future__ import annotations

import json

import pytest
from ninja.testing import TestClient
from typer.testing import CliRunner

from nccid.accounts.models import ApiToken, AuditEvent
from nccid.research import api
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.withdrawal.services import remove_study, withdraw

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def removals(patients, manager):
    """One patient withdrawn from the training set, one study removed, one validation patient
    withdrawn (which researchers must not learn of: the validation set is never handed out)."""
    training, other = patients
    PatientSet.objects.filter(pseudonym=training.pseudonym).update(set_name="training")
    PatientSet.objects.filter(pseudonym=other.pseudonym).update(set_name="validation")
    ImageRecord.objects.filter(pseudonym=training.pseudonym).update(set_name="training")
    ImageRecord.objects.filter(pseudonym=other.pseudonym).update(set_name="validation")
    study = ImageRecord.objects.filter(pseudonym=training.pseudonym).values_list("study_uid", flat=True)[0]
    remove_study(manager, study, "Name burned in", refresh=False)
    withdraw(manager, training.pseudonym, "Objected", refresh=False)
    withdraw(manager, other.pseudonym, "Objected", refresh=False)
    return training.pseudonym, study, other.pseudonym


def _bearer(user) -> dict:
    _, token = ApiToken.issue(user, "test")
    return {"Authorization": f"Bearer {token}"}


def test_the_api_lists_what_left_the_researchers_sets(removals, make_user):
    withdrawn, study, validation_only = removals
    client = TestClient(api.router)
    researcher = make_user("researcher")
    answer = client.get("/withdrawn", headers=_bearer(researcher))
    assert answer.status_code == 200
    body = answer.json()
    assert [p["pseudonym"] for p in body["patients"]] == [withdrawn]
    assert [s["study_uid"] for s in body["studies"]] == [study]
    assert validation_only not in answer.text
    later = client.get("/withdrawn?since=2999-01-01", headers=_bearer(researcher)).json()
    assert later == {"patients": [], "studies": []}
    assert client.get("/withdrawn?since=1-1-2020", headers=_bearer(researcher)).status_code == 400
    assert client.get("/withdrawn", headers=_bearer(make_user("uploader"))).status_code == 403
    assert client.get("/withdrawn").status_code == 401
    assert AuditEvent.objects.filter(action="research.withdrawn", username=researcher.username).count() == 2


def test_the_cli_lists_them_too(removals, make_user):
    from nccid.cli.main import typer_app

    withdrawn, study, validation_only = removals
    researcher = make_user("researcher")
    result = CliRunner().invoke(typer_app, ["research", "withdrawn", "--user", researcher.username,
                                            "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert ([p["pseudonym"] for p in body["patients"]], [s["study_uid"] for s in body["studies"]]) == (
        [withdrawn], [study])
    assert validation_only not in result.output
    refused = CliRunner().invoke(typer_app, ["research", "withdrawn", "--user", researcher.username,
                                             "--since", "yesterday"])
    assert refused.exit_code == 1 and "YYYY-MM-DD" in str(refused.exception)  # one line: main.app


def test_a_reinstated_patient_stays_listed_with_the_reinstatement(removals, manager, make_user):
    from nccid.cli.main import typer_app
    from nccid.withdrawal.services import reinstate

    withdrawn, _study, validation_only = removals
    assert reinstate(manager, withdrawn, "Withdrawn in error")
    assert reinstate(manager, validation_only, "Withdrawn in error")
    researcher = make_user("researcher")

    body = TestClient(api.router).get("/withdrawn", headers=_bearer(researcher)).json()
    [entry] = body["patients"]
    assert entry["pseudonym"] == withdrawn and entry["reinstated_at"] >= entry["withdrawn_at"]
    result = CliRunner().invoke(typer_app, ["research", "withdrawn", "--user", researcher.username])
    assert result.exit_code == 0, result.output
    assert f"patient {withdrawn} withdrawn" in result.stdout and "(reinstated " in result.stdout
    assert validation_only not in result.output

    withdraw(manager, withdrawn, "Objected after all", refresh=False)  # a second withdrawal
    again = TestClient(api.router).get("/withdrawn", headers=_bearer(researcher)).json()
    assert [(p["pseudonym"], p["reinstated_at"] is None) for p in again["patients"]] == [
        (withdrawn, False), (withdrawn, True)]
