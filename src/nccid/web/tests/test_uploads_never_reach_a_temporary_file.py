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
    assert handler.receive_data_chunk(b"x" * 10, limit - 10) is None  # kept
    with pytest.raises(RequestDataTooBig):
        handler.receive_data_chunk(b"x" * 11, limit - 10)
