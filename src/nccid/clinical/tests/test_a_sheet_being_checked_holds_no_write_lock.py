"""Checking a sheet ran in one transaction, and SQLite's transactions take the write lock when
they begin (transaction_mode IMMEDIATE): while a large sheet was read and validated (tens of
seconds) every other write waited, so another user's sign-in took 17 s or failed with
"database is locked" after 30. The check reads, validates and counts new and updated records
outside any transaction; only its short writes take the lock."""

import threading

import pytest
from django.db import connections

from nccid.accounts.models import AuditEvent, audit
from nccid.clinical import services
from nccid.clinical.models import Upload
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, template_row, xlsx_bytes

WAIT = 10  # seconds: only a bound on a failing test, never a pause
TEMPLATE = get_template("positive")


def _in_thread(work, outcome: list, done: threading.Event) -> threading.Thread:
    """``work`` in a thread of its own (its own database connection), its result or error kept."""
    def run():
        try:
            outcome.append(work())
        except Exception as exc:  # the test reports it: a thread's error would be lost
            outcome.append(exc)
        finally:
            connections.close_all()
            done.set()

    return threading.Thread(target=run, daemon=True)


@pytest.mark.django_db(transaction=True, databases=["default", "vault"])
@pytest.mark.parametrize("step", ["validate", "_plan"])  # the sheet's rows; the site's records
def test_another_write_completes_while_a_sheet_is_being_checked(site, make_user, monkeypatch, step):
    checking, let_it_finish = threading.Event(), threading.Event()
    original = getattr(services, step)

    def held_there(*args, **kwargs):
        checking.set()
        let_it_finish.wait(WAIT)
        return original(*args, **kwargs)

    monkeypatch.setattr(services, step, held_there)
    user = make_user("uploader", site=site)
    sheet = xlsx_bytes(TEMPLATE.headers, [template_row(TEMPLATE, PEOPLE[i], {"age": 50})
                                          for i in range(3)])
    checked, check_done = [], threading.Event()
    check = _in_thread(lambda: services.preview_upload(site, "positive", "s.xlsx", sheet, user),
                       checked, check_done)
    written, write_done = [], threading.Event()
    write = _in_thread(lambda: audit("someone.else", "accounts.login").pk, written, write_done)
    check.start()
    try:
        assert checking.wait(WAIT)
        write.start()
        write_done.wait(WAIT)
        assert written and isinstance(written[0], int), written or "the write waited for the check"
    finally:
        let_it_finish.set()
        check.join(WAIT), write.join(WAIT)
    assert check_done.is_set() and isinstance(checked[0], Upload), checked
    assert checked[0].status == Upload.Status.PREVIEW
    assert AuditEvent.objects.filter(action="accounts.login").exists()
