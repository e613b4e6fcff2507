"""A sheet holds NHS numbers until it is pseudonymised: an upload over Django's default 10 MB
was spooled to the system's temporary folder in the clear (and left there by a worker killed
mid-request). Uploaded files now stay in memory up to the upload limit."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def no_temporary_files(monkeypatch):
    made = []

    def refuse(*args, **kwargs):
        made.append(kwargs.get("suffix"))
        raise AssertionError("an upload was written to a temporary file")

    monkeypatch.setattr("django.core.files.uploadedfile.tempfile.NamedTemporaryFile", refuse)
    return made


def test_a_large_upload_is_read_without_a_temporary_file(client, site, make_user, no_temporary_files):
    client.force_login(make_user("uploader", site))
    big = SimpleUploadedFile("sheet.csv", b"NHS/CHI Number,Age\n" + b"x" * (12 * 1024 * 1024))
    answer = client.post("/upload/positive/", {"file": big})
    assert answer.status_code < 500
    assert no_temporary_files == []


def test_a_body_sending_more_than_the_limit_is_stopped_while_read():
    from django.core.exceptions import RequestDataTooBig
    from django.core.files.uploadhandler import StopFutureHandlers

    from nccid.web.uploads import FORM_OVERHEAD, InMemoryOnlyUploadHandler

    handler = InMemoryOnlyUploadHandler()
    handler.handle_raw_input(None, {}, 0, b"x")  # the length said nothing
    with pytest.raises(StopFutureHandlers):  # it takes the file: no other handler runs
        handler.new_file("file", "sheet.csv", "text/csv", 0)
    limit = settings.NCCID_MAX_SPREADSHEET_BYTES + FORM_OVERHEAD
    assert handler.receive_data_chunk(b"x" * (limit - 10), 0) is None  # kept
    with pytest.raises(StopFutureHandlers):  # a second file of the same request
        handler.new_file("other", "more.csv", "text/csv", 0)
    with pytest.raises(RequestDataTooBig):  # counted with the first: files do not add up past it
        handler.receive_data_chunk(b"x" * 11, 0)


def test_a_request_saying_more_than_the_limit_is_refused_before_its_body_is_read():
    from django.core.exceptions import RequestDataTooBig

    from nccid.web.uploads import FORM_OVERHEAD, InMemoryOnlyUploadHandler

    with pytest.raises(RequestDataTooBig):
        InMemoryOnlyUploadHandler().handle_raw_input(
            None, {}, settings.NCCID_MAX_SPREADSHEET_BYTES + FORM_OVERHEAD + 1, b"x")


def test_files_sent_to_the_sign_in_page_are_not_kept_past_the_limit(client):
    """The CSRF check reads any POST's body: an anonymous request of many large files to the
    sign-in page made a worker hold them all (1.2 GB for twenty of 50 MB)."""
    part = b"x" * (settings.NCCID_MAX_SPREADSHEET_BYTES // 2 + 1)
    files = {f"f{i}": SimpleUploadedFile(f"{i}.csv", part) for i in range(3)}
    answer = client.post("/login/", {"username": "a", "password": "b", **files})
    assert answer.status_code == 400
