"""Connections that have not sent their A-ASSOCIATE-RQ are bounded, per peer address and in
all: beyond, a new one is closed at once instead of costing the node threads and memory (1,000
idle connections took it to 300 threads) and association slots until its ARTIM timer. One
address holding its share does not lock out a site calling from another."""

from __future__ import annotations

import select
import socket

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from nccid.imaging import node as node_module

BOUND = 10.0  # the node's ARTIM stays 30 s: a connection closed before this was refused

on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


def _connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=BOUND,
                                    source_address=(source, 0))


def _closed_at_once(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], BOUND)[0]) and sock.recv(1) == b""


def _still_open(sock: socket.socket) -> bool:
    return not select.select([sock], [], [], 0)[0]


def _echo_from(port: int, address: str) -> None:
    ae = AE(ae_title="RTEST_PACS")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="NCCID", bind_address=(address, 0))
    assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
    assoc.release()


@on_a_node
def test_connections_beyond_the_unassociated_limits_are_closed_at_once(node, site, monkeypatch):
    monkeypatch.setattr(node_module, "UNASSOCIATED_PER_ADDRESS", 2)
    monkeypatch.setattr(node_module, "UNASSOCIATED_LIMIT", 3)
    _echo_from(node.port, "127.0.0.2")  # accepted after the fixture's probe of the port …
    assert node.server.unassociated.wait_none(BOUND)  # … which is closed and gone
    idle = [_connect(node.port, "127.0.0.5") for _ in range(2)]
    try:
        with _connect(node.port, "127.0.0.5") as beyond_its_share:
            assert _closed_at_once(beyond_its_share)
        assert all(_still_open(sock) for sock in idle)
        _echo_from(node.port, "127.0.0.2")  # a site on another address is served meanwhile
        idle.append(_connect(node.port, "127.0.0.3"))  # the third: the limit in all
        with _connect(node.port, "127.0.0.4") as beyond_the_limit:
            assert _closed_at_once(beyond_the_limit)
        assert all(_still_open(sock) for sock in idle)  # until their ARTIM timer
    finally:
        for sock in idle:
            sock.close()
