"""The DICOM libraries' log records lose every quoted value, in messages and in tracebacks."""

from __future__ import annotations

import io
import logging

from pydicom.uid import UID

from nccid.imaging.logsafe import RedactValues

PLANTED = "1.2.826.0.1.3680043.9.7433.0100829.2.1.23"


def _logged(emit) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactValues())
    logger = logging.getLogger("pynetdicom.test-logsafe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_quoted_value_in_a_message_is_redacted():
    text = _logged(lambda log: log.warning("Non-conformant 'Affected SOP Instance UID' value "
                                           "'%s'", PLANTED))
    assert PLANTED not in text and "Non-conformant" in text


def test_a_quoted_value_in_an_exception_is_redacted():
    def emit(log):
        try:
            UID(PLANTED, validation_mode=2)  # pydicom's RAISE: its message quotes the value
        except ValueError:
            log.exception("Invalid value for VR UI: '%s'", PLANTED)

    text = _logged(emit)
    assert "Traceback" in text and "ValueError" in text
    assert PLANTED not in text
