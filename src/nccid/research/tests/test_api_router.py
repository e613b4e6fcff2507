"""The research API: token auth, roles, training set only, zip export round-trip."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from django.test import Client
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
    assert AuditEvent.objects.filter(action="research.cohort", username="rita").count() == 1
    assert AuditEvent.objects.filter(action="research.list", username="rita").count() == 2


def test_auth_roles_and_bad_filters(client, make_user):
    assert client.post("/cohort/count", json={}).status_code == 401
    assert client.post("/cohort/count", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    uploader = make_user("uploader")
    assert client.post("/cohort/count", json={}, headers=bearer(uploader)).status_code == 403
    researcher = make_user("researcher")
    bad = client.post("/cohort/count", json={"clinical": ["age>=old"]}, headers=bearer(researcher))
    assert bad.status_code == 400 and "compare it with a number" in bad.json()["detail"]


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


@pytest.mark.parametrize(("query", "filters", "field"), [
    ("/cohort/list?offset=9223372036854775808", {}, "offset"),
    ("/cohort/list?offset=-1", {}, "offset"),
    ("/cohort/list?limit=10001", {}, "limit"),
    ("/cohort/count", {"within": {"days": 1099511627776}}, "within.days"),
    ("/cohort/count", {"within": {"days_before": 36_501, "days_after": 7}}, "within.days_before"),
    ("/cohort/list", {"within": {"days": 7, "days_after": -1}}, "within.days_after"),
])
def test_out_of_range_numbers_answer_400_naming_the_field_before_any_audit(client, researcher,
                                                                           query, filters, field):
    # Through the portal's mount, as in production: its handler makes the schema's checks 400.
    answer = Client().post(f"/api/research{query}", filters, content_type="application/json",
                           HTTP_AUTHORIZATION=bearer(researcher)["Authorization"])
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(field)
    assert not AuditEvent.objects.filter(action__in=("research.cohort", "research.list")).exists()


def test_the_widest_allowed_window_and_last_offset_are_answered(client, researcher):
    wide = client.post("/cohort/list?offset=2147483647", json={"within": {"days": 36_500}},
                       headers=bearer(researcher))
    assert wide.status_code == 200 and wide.json()["images"] == []


@pytest.fixture
def export_tmp():
    """The folder the API's export staging folders are made in (the installation's)."""
    from nccid.research.staging import staging_root

    folder = staging_root()
    folder.mkdir(parents=True, exist_ok=True)
    assert list(folder.iterdir()) == []
    return folder


def test_refused_and_failed_exports_leave_no_temporary_folder(client, make_user, researcher,
                                                             export_tmp):
    uploader = make_user("uploader")
    assert client.post("/export", json={}, headers=bearer(uploader)).status_code == 403
    assert client.post("/export?formats=nope", json={}, headers=bearer(researcher)).status_code == 400
    assert client.post("/export", json={"sex": ["maybe"]}, headers=bearer(researcher)).status_code == 400
    assert client.post("/export?formats=csv", json={}, headers=bearer(researcher)).status_code == 200
    assert list(export_tmp.iterdir()) == []


def test_an_object_missing_from_the_warehouse_answers_503_json_and_cleans_up(
        researcher, tmp_path, monkeypatch, export_tmp):
    from .world import build_world

    small = build_world(tmp_path / "w", n_people=2)
    victim = next(i for i in small.images if i["set_name"] == "training")
    (small.warehouse.root / victim["storage_key"]).unlink()
    monkeypatch.setattr(api, "source_factory", small.source)
    answer = TestClient(api.router).post("/export", json={}, headers=bearer(researcher))
    assert answer.status_code == 503
    assert answer.json() == {"detail": f"{victim['storage_key']}: missing from the warehouse"}
    assert list(export_tmp.iterdir()) == []
    assert AuditEvent.objects.filter(action="research.export.failed").count() == 1
