"""Every log handler stamps its lines in UTC, ISO 8601 with a Z, as the CLI gives times: a
line written at 00:30 on 1 June (BST) reads 23:30 on 31 May, and the two 01:30s of the night
the clocks go back in October read 00:30 and 01:30, in order."""

from __future__ import annotations

import logging
import logging.handlers
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
# Loggers that write to nccid.log and the console (settings.LOGGING), and their handlers'
# classes (pytest and pydicom add handlers of their own, which write nowhere of ours).
CONFIGURED = ("nccid", "pynetdicom", "pydicom", "django.request")
WRITERS = (logging.StreamHandler, logging.handlers.WatchedFileHandler)


def _handlers() -> list[logging.Handler]:
    """The settings' handlers, as Django set them up: console and nccid.log."""
    handlers = [h for name in CONFIGURED for h in logging.getLogger(name).handlers
                if type(h) in WRITERS]
    assert {type(h) for h in handlers} == set(WRITERS)
    assert len(handlers) == 6  # console and file for nccid and django.request, a file for each DICOM library
    return handlers


def _line(handler: logging.Handler, at: datetime) -> str:
    record = logging.LogRecord("nccid.test", logging.INFO, __file__, 1, "hello", None, None)
    record.created, record.msecs = at.timestamp(), 0.0
    return handler.format(record)


def test_a_summer_line_is_stamped_in_utc_with_a_z():
    at = datetime(2026, 6, 1, 0, 30, tzinfo=LONDON)
    for handler in _handlers():
        assert _line(handler, at) == "2026-05-31T23:30:00.000Z INFO nccid.test hello"


def test_the_repeated_hour_in_october_is_told_apart():
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 BST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 01:30 GMT, an hour later
    assert first.astimezone(LONDON).strftime("%H:%M") == second.astimezone(LONDON).strftime("%H:%M")
    for handler in _handlers():
        stamps = [_line(handler, at).split()[0] for at in (first, second)]
        assert stamps == ["2026-10-25T00:30:00.000Z", "2026-10-25T01:30:00.000Z"]
