"""Keep DICOM libraries from writing header values into logs.

pydicom and pynetdicom quote the offending value when they warn about a non-conformant
element (e.g. "Non-conformant 'Affected SOP Instance UID' value '1.2.826...'"): an original
UID or a name would then reach the log files. Their warnings keep their text, minus values.
"""

from __future__ import annotations

import logging
import re
import traceback
import warnings

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class RedactValues(logging.Filter):
    """Replace every quoted value in a record's message by '…'."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: drop its arguments
            message = str(record.msg)
        record.msg, record.args = _QUOTED.sub("'…'", message), None
        if record.exc_info:  # an exception's message may quote values (pydicom's do)
            record.exc_text = _traceback_without_message(record.exc_info)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = "(traceback withheld: it may quote a value)"
        return True


def _traceback_without_message(exc_info) -> str:
    """Where it failed (frames hold code, never data) and the exception's type, not its text."""
    kind, _value, tb = exc_info
    frames = "".join(traceback.format_tb(tb))
    name = getattr(kind, "__name__", "Exception")
    return f"Traceback (most recent call last):\n{frames}{name}: (message withheld: it may quote a value)"


def protect_logs() -> None:
    """Redact the DICOM libraries' log records and silence their Python warnings.

    Filters go on the libraries' own loggers (and their existing children), never on handlers:
    a handler may be shared with other loggers (ours, or a test runner's), whose messages must
    keep their text. Records of children created later are redacted by the `dicom_file`
    handler that the settings give these libraries.
    """
    redact = RedactValues()
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in ("pynetdicom", "pydicom"):
            _add_once(logger, redact)
    for name in ("pynetdicom", "pydicom"):
        logger = logging.getLogger(name)
        _add_once(logger, redact)
        if not logger.handlers:
            logger.propagate = False
            quiet = logging.StreamHandler()  # what Python's last-resort handler would do
            quiet.setLevel(logging.WARNING)
            quiet.addFilter(redact)
            logger.addHandler(quiet)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    warnings.filterwarnings("ignore", module=r"pynetdicom(\..*)?$")


def _add_once(logger: logging.Logger, redact: RedactValues) -> None:
    if not any(isinstance(f, RedactValues) for f in logger.filters):
        logger.addFilter(redact)
