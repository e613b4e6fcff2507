"""A refused association is logged with the reason the peer was given: a busy node's refusals
at its association limit are not "not a registered site's AE title"."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


class _Refusals(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.heard = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "refused an association" in record.getMessage():
            self.messages.append(record.getMessage())
            self.heard.set()


def _associate(port: int, calling: str):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="NCCID")


def _refusal_logged(port: int, calling: str) -> str:
    refusals = _Refusals()
    logger = logging.getLogger("nccid.imaging.node")
    logger.addHandler(refusals)
    try:
        assert _associate(port, calling).is_rejected
        assert refusals.heard.wait(20)  # pynetdicom rejects first, then tells the handler
    finally:
        logger.removeHandler(refusals)
    [message] = refusals.messages
    return message


@on_a_node
def test_a_refusal_at_the_association_limit_says_so(node, site):
    node.server.ae.maximum_associations = 1
    held = _associate(node.port, "RTEST_PACS")
    deadline = time.monotonic() + 20
    while not held.is_established and time.monotonic() < deadline:
        held = _associate(node.port, "RTEST_PACS")  # the fixture's probe of the port held it
    assert held.is_established
    try:
        message = _refusal_logged(node.port, "RTEST_PACS")
    finally:
        held.release()
    assert "AE RTEST_PACS" in message and "association limit (1) reached" in message
    assert "registered" not in message


@on_a_node
def test_a_refusal_of_an_unknown_title_says_so(node, site):
    message = _refusal_logged(node.port, "STRANGER")
    assert "AE STRANGER" in message and "not a registered site's AE title" in message
