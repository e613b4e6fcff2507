"""The research API: token auth, roles, training set only, zip export round-trip."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from ninja.testing import TestClient

from nccid.accounts.models import ApiToken, AuditEvent
from nccid.research import api


@pytest.fixture
def client(world, monkeypatch):
    monkeypatch.setattr(api, "source_factory", world.source)
    return TestClient(api.router)


def bearer(user):
    _, token = ApiToken.issue(user, "test")
    return {"Authorization": f"Bearer {token}"}


def test_count_and_list_are_training_only(client, world, researcher):
    headers = bearer(researcher)
    counts = client.post("/cohort/count", json={}, headers=headers).json()
    training = [i for i in world.images if i["set_name"] == "training"]
    assert counts["images"] == len(training)
    page = client.post("/cohort/list?limit=5", json={"modality": ["xray"]}, headers=headers).json()
    assert len(page["images"]) == 5 and {r["set_name"] for r in page["images"]} == {"training"}
    everything = client.post("/cohort/list?limit=1000", json={}, headers=headers)
    assert not [p for p in world.pseudonyms("validation") if p in everything.text]
    assert AuditEvent.objects.filter(action="research.cohort", username="rita").count() == 3


def test_auth_roles_and_bad_filters(client, make_user):
    assert client.post("/cohort/count", json={}).status_code == 401
    assert client.post("/cohort/count", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    uploader = make_user("uploader")
    assert client.post("/cohort/count", json={}, headers=bearer(uploader)).status_code == 403
    researcher = make_user("researcher")
    bad = client.post("/cohort/count", json={"clinical": ["age>=old"]}, headers=bearer(researcher))
    assert bad.status_code == 400 and "compare with a number" in bad.json()["detail"]


def test_export_zip_round_trips(client, world, researcher):
    response = client.post("/export?formats=csv,dicom", json={"modality": ["CT"]},
                           headers=bearer(researcher))
    assert response.status_code == 200
    body = response.content
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        manifest = zf.read("manifest.csv").decode().splitlines()[1:]
        for line in manifest:
            key, size, sha = line.split(",")
            assert hashlib.sha256(zf.read(key)).hexdigest() == sha
        dcm = [n for n in zf.namelist() if n.endswith(".dcm")]
    want = {i["storage_key"] for i in world.images if i["set_name"] == "training" and i["modality"] == "CT"}
    assert set(dcm) == want
