"""A refused association is logged with the calling AE title, which anyone may choose: one
holding digits (an NHS or hospital number typed as a title) is logged by its shape and length
only; a title of letters, as sites' titles mostly are, as sent."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from nccid.imaging.node import handle_rejected


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _logged_refusal(title: str) -> str:
    kept = _Kept()
    logger = logging.getLogger("nccid.imaging.node")
    logger.addHandler(kept)
    try:
        handle_rejected(SimpleNamespace(assoc=SimpleNamespace(
            requestor=SimpleNamespace(ae_title=title, address="203.0.113.9"))))
    finally:
        logger.removeHandler(kept)
    [message] = kept.messages
    return message


@pytest.mark.parametrize(("title", "shape"), [("9990001006", "9999999999 (10 characters)"),
                                              ("HOSPZQX991", "AAAAAAA999 (10 characters)"),
                                              ("999 000 1006", "999 999 9999 (12 characters)")])
def test_a_title_with_digits_is_logged_by_its_shape(title, shape):
    message = _logged_refusal(title)
    assert title not in message and shape in message and "203.0.113.9" in message


def test_a_title_of_letters_is_logged_as_sent():
    assert "refused an association from AE STRANGER at 203.0.113.9" in _logged_refusal("STRANGER")
