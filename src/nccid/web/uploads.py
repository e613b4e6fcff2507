"""Uploaded files are kept in memory only, never spooled to a temporary file.

A clinical sheet holds NHS and hospital numbers until it is pseudonymised: Django's default
handlers wrote any upload over FILE_UPLOAD_MAX_MEMORY_SIZE to the system's temporary folder in
the clear, where a worker killed mid-request (out of memory, a restart past the graceful
timeout) left it. The upload views refuse a body over the limit by its Content-Length before
reading it; this handler's cap stops one that says less than it sends."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import MemoryFileUploadHandler

# Room for the multipart form's other fields and boundaries around a sheet at the limit.
FORM_OVERHEAD = 1024 * 1024


def request_limit() -> int:
    """The most one request may send in files, whichever view reads it (CSRF protection reads
    the body of any POST, the sign-in page's too)."""
    return settings.NCCID_MAX_SPREADSHEET_BYTES + FORM_OVERHEAD


class InMemoryOnlyUploadHandler(MemoryFileUploadHandler):
    """One per request (Django makes the handlers anew for each): the cap is on all the
    request's files together, so many files of a request cannot add up past it."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > request_limit():
            raise RequestDataTooBig("the request is larger than the upload limit")
        self.received = 0
        self.activated = True  # whatever the length said: never a temporary file

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > request_limit():
            raise RequestDataTooBig("the request's files are larger than the upload limit")
        return super().receive_data_chunk(raw_data, start)
