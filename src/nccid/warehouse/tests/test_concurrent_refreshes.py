"""Two catalogue refreshes at once (a withdrawal's refreshes and the cron job, each with its own
database connection) run one after the other: the state they leave names only files that
exist, and reflects the data as it is after both."""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connections

from nccid.warehouse import catalogue
from nccid.warehouse.catalogue import _key, _read_state, connect_catalogue, refresh_catalogue
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import store_image
from nccid.withdrawal.services import withdraw

WAIT = 120  # seconds: only if the other refresh died without saying so


class _SetOnMessage(logging.Handler):
    def __init__(self, message: str, event: threading.Event) -> None:
        super().__init__()
        self.message, self.event = message, event

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.event.set()


def _in_thread(name: str, errors: list, finished: threading.Event | None = None) -> threading.Thread:
    def run() -> None:
        try:
            refresh_catalogue()
        except Exception as exc:  # reported to the test, which shows it
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            connections.close_all()  # this thread's own connections
            if finished is not None:
                finished.set()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True, databases=["default", "vault"])
def test_overlapping_refreshes_leave_a_whole_state_of_the_later_data(
        site, backend, make_image, make_user, monkeypatch):
    for index in (0, 1):
        store_image(site, *make_image(index))
    gone = make_image(0)[0]
    paused, resume = threading.Event(), threading.Event()
    derived_tables = catalogue._derived_tables

    def first_pauses(*args):  # the first refresh stops after reading the data, before publishing
        tables = derived_tables(*args)
        if threading.current_thread().name == "first":
            paused.set()
            resume.wait(WAIT)
        return tables

    monkeypatch.setattr(catalogue, "_derived_tables", first_pauses)
    waiting = _SetOnMessage(catalogue.WAITING, resume)
    logging.getLogger("nccid.warehouse").addHandler(waiting)
    errors: list[str] = []
    try:
        first = _in_thread("first", errors)
        assert paused.wait(WAIT)
        # meanwhile: a patient is withdrawn and a new one arrives
        withdraw(make_user("data-manager"), gone, "sent in error", refresh=False)
        store_image(site, *make_image(2))
        # the second refresh resumes the first once it waits for it (or, unserialised, once it is done)
        second = _in_thread("second", errors, finished=resume)
        for thread in (first, second):
            thread.join(WAIT)
    finally:
        logging.getLogger("nccid.warehouse").removeHandler(waiting)

    assert errors == []
    state = _read_state(backend)
    named = {e["key"]: e["sha256"] for files in state["files"].values() for e in files}
    assert [key for key in named if not backend.exists(_key(key))] == []
    assert {key: backend.sha256(_key(key)) for key in named} == named  # the files it wrote
    assert state["version"] == 2  # one after the other, not both version 1
    in_db = set(ImageRecord.objects.values_list("pseudonym", flat=True))
    assert gone not in in_db and len(in_db) == 2
    con = connect_catalogue()
    try:
        for view in ("images", "studies", "patients"):
            shown = {row[0] for row in con.execute(f"SELECT DISTINCT pseudonym FROM {view}").fetchall()}
            assert shown == in_db, view
        assert con.execute("SELECT count(*) FROM images").fetchone()[0] == ImageRecord.objects.count()
    finally:
        con.close()
