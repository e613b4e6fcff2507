"""Uploads at the limits: the 50 MB limit is said on the form and a larger request is refused
by its Content-Length before its body is read (it was said only once the whole file had
arrived); the API answers JSON for any failure of an upload (a sheet wrong in every cell gave
an HTML 500 after 94 s, and no upload record), says how many problems it did not list, and
gives the sheet's warnings that the portal and the CLI show (a misspelt column ignored)."""

from __future__ import annotations

import io
import re

import pytest
from django.test import Client

from nccid.accounts.models import ApiToken
from nccid.clinical import services, validation
from nccid.clinical.models import Upload
from nccid.clinical.schema import get_template
from nccid.clinical.tests.helpers import PEOPLE, template_row, xlsx_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
TEMPLATE = get_template("positive")
TOO_LARGE = "The selected file must be smaller than 50 MB: split it into several uploads"
OVER = str(51 * 1024 * 1024)  # a Content-Length over the limit; the body sent is tiny


@pytest.fixture
def token(site, make_user):
    _, token = ApiToken.issue(make_user("uploader", site=site), "automation")
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _sheet(rows: int = 1, **values) -> bytes:
    return xlsx_bytes(TEMPLATE.headers, [
        template_row(TEMPLATE, PEOPLE[i], {"age": 50, **values}) for i in range(rows)])


def _post(client, headers, data: bytes, **extra):
    upload = io.BytesIO(data)
    upload.name = "positive.xlsx"
    return client.post("/api/uploads", {"kind": "positive", "file": upload}, **headers, **extra)


def test_the_form_states_the_limit(client, site, make_user):
    client.force_login(make_user("uploader", site))
    assert "smaller than 50 MB" in client.get("/upload/positive/").content.decode()


def test_the_portal_refuses_a_request_over_the_limit_before_reading_it(client, site, make_user):
    client.force_login(make_user("uploader", site))
    # Were the body read, the test client's input would fail: it holds far fewer bytes.
    answer = client.post("/upload/positive/", b"--x--", content_type="multipart/form-data; boundary=x",
                         CONTENT_LENGTH=OVER)
    assert answer.status_code == 413 and TOO_LARGE in answer.content.decode()
    assert not Upload.objects.exists()


def test_the_portal_still_checks_the_csrf_token_of_an_upload(site, make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("uploader", site))
    upload = io.BytesIO(_sheet())
    upload.name = "positive.xlsx"
    assert client.post("/upload/positive/", {"file": upload}).status_code == 403
    assert not Upload.objects.exists()


def test_the_api_refuses_a_request_over_the_limit_before_reading_it(client, token):
    answer = client.post("/api/uploads", b"--x--", content_type="multipart/form-data; boundary=x",
                         CONTENT_LENGTH=OVER, **token)
    assert answer.status_code == 413
    assert answer.json() == {"detail": TOO_LARGE}


def test_an_unexpected_failure_of_an_upload_is_json(client, token, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "preview_upload", broken)
    answer = _post(client, token, _sheet())
    assert answer.status_code == 500 and answer["Content-Type"].startswith("application/json")
    assert "could not be checked" in answer.json()["detail"]


def test_a_failure_in_the_checks_is_a_refused_upload_the_site_sees(client, token, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(services, "validate", out_of_memory)
    answer = _post(client, token, _sheet())
    assert answer.status_code == 201
    body = answer.json()
    assert body["status"] == "rejected" and "internal error" in body["message"]
    listed = client.get("/api/uploads", **token).json()
    assert [u["id"] for u in listed] == [body["id"]]


def test_the_api_says_how_many_problems_it_does_not_list(client, token, monkeypatch):
    monkeypatch.setattr(validation, "PROBLEMS_PER_COLUMN", 2)
    body = _post(client, token, _sheet(rows=6, age="old")).json()
    assert len(body["errors"]) == 2 and body["n_errors"] == 6
    assert body["not_listed"] == [{"column": TEMPLATE.field("age").header, "severity": "error",
                                   "count": 4}]
    assert client.get(f"/api/uploads/{body['id']}", **token).json()["not_listed"] == body["not_listed"]


def test_the_check_page_says_how_many_problems_it_does_not_list(client, site, make_user, monkeypatch):
    monkeypatch.setattr(validation, "PROBLEMS_PER_COLUMN", 2)
    user = make_user("uploader", site)
    upload = services.preview_upload(site, "positive", "x.xlsx", _sheet(rows=6, age="old"), user)
    client.force_login(user)
    page = client.get(f"/uploads/{upload.pk}/").content.decode()
    assert 'id="problems-not-listed"' in page
    assert f"{TEMPLATE.field('age').header}: and 4 more errors in this column, not listed" in page
    assert "6 errors in 6 rows" in page


def test_the_api_gives_the_sheet_warnings(client, token):
    headers = [*TEMPLATE.headers, "Smokng status"]  # a misspelt column is ignored, and said so
    sheet = xlsx_bytes(headers, [[*template_row(TEMPLATE, PEOPLE[0], {"age": 50}), 1]])
    body = _post(client, token, sheet).json()
    assert body["status"] == "preview" and body["n_errors"] == 0
    assert any("misspelling of 'Smoking status'" in w for w in body["sheet_warnings"])
    detail = client.get(f"/api/uploads/{body['id']}", **token).json()
    listed = client.get("/api/uploads", **token).json()
    confirmed = client.post(f"/api/uploads/{body['id']}/confirm", **token).json()
    for answer in (detail, listed[0], confirmed):
        assert answer["sheet_warnings"] == body["sheet_warnings"]


def test_the_schema_shows_the_warnings_and_the_problems_not_listed(client):
    schemas = client.get("/api/openapi.json").json()["components"]["schemas"]
    assert "sheet_warnings" in schemas["UploadOut"]["properties"]
    assert {"sheet_warnings", "not_listed"} <= set(schemas["UploadDetailOut"]["properties"])


def _table_rows(page: str, table_id: str) -> list[list[str]]:
    """The cells' text of each body row of the table ``table_id``."""
    table = page[page.index(f'id="{table_id}"'):]
    body = table[table.index("<tbody"):table.index("</tbody>")]
    return [[_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_problems_by_column_counts_those_not_listed_too(client, site, make_user):
    """The table of problems by column counted only the problems kept: NHS/CHI Number showed
    170 while the column had 49,990 errors. Those only counted are a row of their own."""
    nhs, age = "NHS/CHI Number", TEMPLATE.field("age").header
    kept = [{"row": r, "column": nhs, "value": "", "severity": "error", "reason": "not a valid NHS number"}
            for r in range(2, 172)]
    kept += [{"row": r, "column": age, "value": "x", "severity": "error", "reason": "not a number"}
             for r in range(2, 32)]
    upload = Upload.objects.create(
        site=site, kind="positive", sha256="0" * 64, status="rejected", total_rows=49_991,
        rejected_rows=49_991, errors=kept,
        omitted_problems=[{"column": nhs, "severity": "error", "count": 49_820}])
    client.force_login(make_user("uploader", site))
    rows = _table_rows(client.get(f"/uploads/{upload.pk}/").content.decode(), "problem-groups")
    times = {}
    for column, _, count, _ in rows:
        times[column] = times.get(column, 0) + int(count)
    assert times == {nhs: 49_990, age: 30} == {nhs: upload.error_count - 30, age: 30}
    assert rows[1][0] == nhs and rows[1][1].startswith("Error More errors in this column, not listed")
    assert rows[1][3] == "–"  # the rows of those only counted are not known
