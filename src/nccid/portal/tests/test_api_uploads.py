"""A site automating uploads through the API: template, preview, errors, confirm, history."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from nccid.accounts.models import ApiToken
from nccid.clinical.models import ClinicalRecord, Upload
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def uploader_token(site, make_user):
    _, token = ApiToken.issue(make_user("uploader", site=site), "automation")
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _sheet(tmp_path, errors: int = 0, seed: int = 3) -> bytes:
    path = tmp_path / f"sheet-{errors}.xlsx"
    write_sheet("positive", people(6, seed=seed), path, errors=errors, seed=seed)
    return path.read_bytes()


def _post(client, headers, data: bytes, kind: str = "positive", **extra):
    upload = io.BytesIO(data)
    upload.name = "positive.xlsx"
    return client.post("/api/uploads", {"kind": kind, "file": upload, **extra}, **headers)


def test_template_download_is_the_current_workbook(client, uploader_token):
    response = client.get("/api/templates/positive", **uploader_token)
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet.cell(1, 1).value == "NHS/CHI Number"


def test_preview_lists_every_error_then_the_fixed_sheet_is_confirmed_once(client, site, tmp_path,
                                                                        uploader_token):
    bad = _post(client, uploader_token, _sheet(tmp_path, errors=2))
    assert bad.status_code == 201
    preview = bad.json()
    assert preview["n_errors"] >= 2 and preview["rejected"] >= 1
    assert all({"row", "column", "reason"} <= set(e) for e in preview["errors"])
    assert client.post(f"/api/uploads/{preview['id']}/cancel", **uploader_token).json()["status"] == "cancelled"

    good = _post(client, uploader_token, _sheet(tmp_path)).json()
    assert (good["status"], good["n_errors"], good["new"]) == ("preview", 0, 6)  # planned
    assert ClinicalRecord.objects.count() == 0  # nothing is imported before confirmation
    done = client.post(f"/api/uploads/{good['id']}/confirm", **uploader_token).json()
    again = client.post(f"/api/uploads/{good['id']}/confirm", **uploader_token)
    assert (done["status"], done["new"]) == ("accepted", 6)
    assert again.status_code in (200, 422) and ClinicalRecord.objects.count() == 6

    listed = client.get("/api/uploads", **uploader_token).json()
    assert [u["id"] for u in listed] == [good["id"], preview["id"]]
    detail = client.get(f"/api/uploads/{preview['id']}", **uploader_token).json()
    assert len(detail["errors"]) == preview["n_errors"]
    figures = client.get("/api/summary", **uploader_token).json()
    assert figures["your_site"]["patients"] == 6 and figures["centres"] == 1  # exact
    assert figures["total_patients"] == 5  # national counts: to the nearest 5 for a site


def test_identifier_values_never_come_back_in_errors(client, tmp_path, uploader_token):
    data = _sheet(tmp_path, errors=4, seed=6)
    numbers = {p.nhs_number for p in people(6, seed=6)}
    body = _post(client, uploader_token, data).content.decode()
    assert not any(n in body for n in numbers)


def test_an_uploader_cannot_upload_for_another_site(client, other_site, tmp_path, uploader_token):
    response = _post(client, uploader_token, _sheet(tmp_path), site=other_site.code)
    assert response.status_code == 404
    assert not Upload.objects.filter(site=other_site).exists()


def test_wrong_kind_and_researchers_are_refused(client, tmp_path, make_user, uploader_token):
    wrong = _post(client, uploader_token, _sheet(tmp_path), kind="nonsense")
    assert wrong.status_code == 422
    [problem] = wrong.json()["detail"]
    assert problem["loc"] == ["form", "kind"] and "positive" in problem["msg"]
    _, token = ApiToken.issue(make_user("researcher"), "r")
    refused = _post(client, {"HTTP_AUTHORIZATION": f"Bearer {token}"}, _sheet(tmp_path))
    assert refused.status_code == 403
    assert not Upload.objects.exists()
