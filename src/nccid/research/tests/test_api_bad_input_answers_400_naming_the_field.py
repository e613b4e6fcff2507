"""Bad filters through the whole stack (URLs, middleware, the portal's API): 400 naming the
field, never a 500, never a key quietly ignored, nothing queried or audited."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from django.test import Client

from nccid.accounts.models import ApiToken, AuditEvent
from nccid.research import api

pytestmark = pytest.mark.django_db
COUNT = "/api/research/cohort/count"


@pytest.fixture(autouse=True)
def _world(world, monkeypatch):
    monkeypatch.setattr(api, "source_factory", world.source)


@pytest.mark.parametrize(("body", "field"), [
    ('{"within": {"days": 1e400}}', "within.days"),
    ('{"within": {"days_before": 1e400}}', "within.days_before"),
    ('{"within": {"days_after": -1e400}}', "within.days_after"),
    ('{"within": {"days": 2.5}}', "within.days"),
    ('{"within": {"days": true}}', "within.days"),
    ('{"within": {"days": [1]}}', "within.days"),
    ('{"age_min": 10000000000000000000000000000000000000000}', "age_min"),
    ('{"age_max": -10000000000000000000000000000000000000000}', "age_max"),
    ('{"age_min": 151}', "age_min"),
    ('{"age_max": -1}', "age_max"),
    ('{"age_min": 1e400}', "age_min"),
    ('{"age_min": 30.5}', "age_min"),
    ('{"age_max": true}', "age_max"),
    ('{"age_min": false}', "age_min"),
])
def test_a_number_out_of_range_or_not_whole_is_400_naming_the_field(ask, body, field):
    answer = ask(body)
    assert answer.status_code == 400, answer.content
    assert answer.json()["detail"].startswith(f"{field}: ")
    assert not AuditEvent.objects.filter(action="research.cohort").exists()


def test_true_is_not_an_age_as_it_is_not_a_day_count(ask):
    assert ask('{"age_max": true}').json()["detail"] == "age_max: True is not a whole number"
    assert ask('{"within": {"days": true}}').json()["detail"] == (
        "within.days: True is not a whole number")


@pytest.mark.django_db(databases=["default", "vault"])
@pytest.mark.parametrize("empty", ['""', '[""]', '["CT", " "]'])
def test_an_empty_modality_is_refused_by_the_api_the_command_line_and_python(
        ask, world, researcher, monkeypatch, empty):
    """It matched no image through the API and the command line, and every image through
    nccid.research.open: each door now refuses it, naming the field."""
    from typer.testing import CliRunner

    import nccid.research
    from nccid.cli.common import UserError
    from nccid.cli.main import typer_app
    from nccid.research import cli as research_cli
    from nccid.research.cohort import CohortError

    answer = ask(f'{{"modality": {empty}}}')
    assert answer.status_code == 400, answer.content
    assert answer.json()["detail"].startswith("modality: an empty value matches nothing")
    values = json.loads(empty)
    with pytest.raises(CohortError, match="^modality: an empty value matches nothing"):
        nccid.research.open(researcher, source=world.source(), modality=values)
    monkeypatch.setattr(research_cli, "_source", world.source)
    given = [values] if isinstance(values, str) else values
    args = [arg for value in given for arg in ("--modality", value)]
    result = CliRunner().invoke(typer_app, ["research", "cohort", "--user", "rita", *args])
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception).startswith("modality: an empty value matches nothing")
    assert not AuditEvent.objects.filter(action__startswith="research.").exists()


@pytest.mark.parametrize(("body", "field"), [
    ('{"age_min": "abc"}', "age_min"),
    ('{"modality": [5]}', "modality.0"),
    ('{"study_date_from": 20200101}', "study_date_from"),
    ('{"within": "a week"}', "within"),
])
def test_a_value_of_the_wrong_type_is_400_not_422(ask, body, field):
    answer = ask(body)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(f"{field}: ")


def test_a_misspelt_filter_key_is_refused_not_ignored(ask):
    answer = ask('{"modalty": ["CT"]}')
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail.startswith("modalty: unknown filter field") and "modality" in detail


def test_a_misspelt_key_refuses_an_export_instead_of_zipping_everything(ask):
    answer = ask('{"modalty": ["CT"]}', url="/api/research/export?formats=csv")
    assert answer.status_code == 400 and answer.json()["detail"].startswith("modalty: ")
    assert not AuditEvent.objects.filter(action__startswith="research.export").exists()


def test_a_misspelt_day_count_inside_within_is_refused_not_defaulted(ask):
    answer = ask('{"within": {"days_befor": 0, "days_after": 0}}')
    assert answer.status_code == 400
    assert "days_befor" in answer.json()["detail"]


def test_a_misspelt_clinical_field_is_refused_with_the_known_fields(ask):
    answer = ask('{"clinical": ["temprature=38"]}')
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert "'temprature' is not a clinical field" in detail and "temperature" in detail


def test_a_bare_value_is_a_one_item_list(ask, world):
    bare = ask('{"modality": "CT", "clinical": "itu_admission=Yes"}')
    listed = ask('{"modality": ["CT"], "clinical": ["itu_admission=Yes"]}')
    assert bare.status_code == listed.status_code == 200
    assert bare.json() == listed.json() and bare.json()["images"] > 0


def test_an_export_of_a_bare_modality_holds_that_modality_only(ask, world):
    answer = ask('{"modality": "CT"}', url="/api/research/export?formats=csv")
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(answer.streaming_content))) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("images.csv").decode())))
    want = [i for i in world.images if i["set_name"] == "training" and i["modality"] == "CT"]
    assert {r["modality"] for r in rows} == {"CT"} and len(rows) == len(want)


def test_the_portals_other_operations_keep_422_with_a_list(make_user):
    uploader = make_user("uploader")
    _, token = ApiToken.issue(uploader, "test")
    answer = Client().post("/api/uploads", data={"kind": "positive"},
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 422 and isinstance(answer.json()["detail"], list)
