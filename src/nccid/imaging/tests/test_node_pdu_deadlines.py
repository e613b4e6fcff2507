"""A PDU must arrive whole within a deadline, not merely keep trickling: before association
the A-ASSOCIATE-RQ within the ARTIM timer of the connection's start, after it each PDU within
the network timeout of its first byte. A peer sending a byte now and then no longer holds an
association (a slot of the node's limit) for ever. Deadlines are made short on the running
node (``server.ae``: each new association takes its timeouts from there)."""

from __future__ import annotations

import select
import socket
import struct
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

ARTIM = 1.0  # seconds: the node's A-ASSOCIATE-RQ deadline in these tests
BOUND = 15.0  # the tests give up (fail) if the node has not closed by then
PACE = 0.2  # a trickling peer's pause between bytes (its pace, not synchronisation)

on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


def _closed_by_node(sock: socket.socket, trickle: bool) -> float | None:
    """Seconds until the node closed (or aborted) the connection, sending one byte every
    ``PACE`` seconds meanwhile if ``trickle``; None if still open after ``BOUND``."""
    started = time.monotonic()
    while time.monotonic() - started < BOUND:
        if select.select([sock], [], [], PACE)[0]:  # readable: an A-ABORT, or closed
            return time.monotonic() - started
        if trickle:
            try:
                sock.send(b"\x00")
            except OSError:
                return time.monotonic() - started
    return None


@on_a_node
@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_an_association_request_not_whole_within_artim_is_closed(node, site, trickle):
    node.server.ae.acse_timeout = ARTIM  # network_timeout stays 120 s
    with socket.create_connection(("127.0.0.1", node.port), timeout=BOUND) as peer:
        peer.sendall(struct.pack(">BBL", 0x01, 0, 1000) + b"\x00\x01")  # RQ: 2 of 1000 bytes
        seconds = _closed_by_node(peer, trickle)
    assert seconds is not None, f"still open after {BOUND} s (ARTIM {ARTIM} s)"
    assoc = AE(ae_title="RTEST_PACS")
    assoc.add_requested_context(Verification)
    served = assoc.associate("127.0.0.1", node.port, ae_title="NCCID")
    assert served.is_established and served.send_c_echo().Status == 0x0000
    served.release()


@on_a_node
def test_a_pdu_trickling_after_association_is_aborted_at_the_network_timeout(node, site):
    node.server.ae.network_timeout = 1.0
    ae = AE(ae_title="RTEST_PACS")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="NCCID")
    assert assoc.is_established
    sock = assoc.dul.socket.socket
    sock.sendall(struct.pack(">BBL", 0x04, 0, 1024 * 1024))  # P-DATA declaring 1 MB
    started = time.monotonic()
    while assoc.is_alive() and time.monotonic() - started < BOUND:
        try:
            sock.send(b"\x00")
        except OSError:  # closed: the association's thread is ending
            assoc.join(BOUND)
            break
        assoc.join(PACE)  # the peer's pace; returns at once when the node aborted it
    assert not assoc.is_alive(), f"still open after {BOUND} s (network timeout 1 s)"
    assert assoc.is_aborted
