"""``nccid research cohort --list --json`` writes a page of images as the API's cohort list
does: dates as dates (``2020-04-06``), arrival times in UTC with their offset (``...Z``), not
the midnight timestamps and zone-less times pandas writes."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest
from django.test import Client
from typer.testing import CliRunner

from nccid.accounts.models import ApiToken
from nccid.cli.main import typer_app
from nccid.research import api
from nccid.research import cli as research_cli

from .world import build_world, write_catalogue

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
ARRIVED = datetime(2026, 11, 29, 16, 19, 59, 557000)  # UTC, as the catalogue keeps it


@pytest.fixture(scope="module")
def arrived_world(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("arrived-world"), n_people=4)
    for image in world.images:
        image["received_at"] = ARRIVED
    write_catalogue(world)
    return world


def test_the_cli_lists_images_exactly_as_the_api(arrived_world, researcher, monkeypatch):
    monkeypatch.setattr(research_cli, "_source", arrived_world.source)
    monkeypatch.setattr(api, "source_factory", arrived_world.source)
    result = CliRunner().invoke(typer_app, ["research", "cohort", "--user", "rita", "--modality",
                                            "xray", "--list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)["images"]
    answer = Client().post("/api/research/cohort/list", {"modality": "xray"},
                           content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(researcher, 't')[1]}")
    assert answer.status_code == 200
    assert listed == answer.json()["images"] and listed
    for image in listed:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", image["study_date"]), image["study_date"]
        assert image["received_at"] == "2026-11-29T16:19:59.557Z"
