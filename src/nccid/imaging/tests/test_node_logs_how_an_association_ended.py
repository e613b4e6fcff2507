"""An association that ends other than by a release leaves one line in the node's log: who (the
calling AE title, the peer's address), why (the peer's A-ABORT, a dropped connection, a PDU out
of turn, a deadline), and whether an instance was being received (it is not stored: the sender
should send it again). Never a dataset value. A connection that closes without sending a byte
(a port probe, a health check) leaves none. Each test waits for the association's thread to end
(it writes the line as it ends), from a raw socket peer."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from nccid.imaging import node as node_module
from nccid.synthetic.dicom import synthetic_instance

BOUND = 20.0  # seconds: a test fails if the node has not ended the association by then
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
ENDED = "ended abnormally"

on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


# -- a raw DICOM peer (PS3.8 9.3) -----------------------------------------------------------------
def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _association_request(calling: str = "RTEST_PACS", context_id: int = 1) -> bytes:
    body = (struct.pack(">HH", 1, 0) + b"NCCID".ljust(16) + calling.encode().ljust(16)
            + bytes(32) + _item(0x10, b"1.2.840.10008.3.1.1.1")
            + _item(0x20, struct.pack(">BBBB", context_id, 0, 0, 0)
                    + _item(0x30, CT.encode()) + _item(0x40, EXPLICIT.encode()))
            + _item(0x50, _item(0x51, struct.pack(">L", 65536))
                    + _item(0x52, b"1.2.826.0.1.3680043.9.9999.1")))
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def _p_data(context_id: int, control: int, data: bytes) -> bytes:
    item = struct.pack(">LBB", len(data) + 2, context_id, control) + data
    return struct.pack(">BBL", 0x04, 0, len(item)) + item


def _store_command(sop_instance: str) -> bytes:
    """A C-STORE-RQ command set with a dataset to follow (implicit VR, PS3.7 9.3.1.1)."""
    def element(number: int, value: bytes) -> bytes:
        return struct.pack("<HHL", 0x0000, number, len(value)) + value

    def uid(value: str) -> bytes:
        return value.encode() + b"\0" * (len(value) % 2)

    elements = b"".join((
        element(0x0002, uid(CT)), element(0x0100, struct.pack("<H", 0x0001)),
        element(0x0110, struct.pack("<H", 1)), element(0x0700, struct.pack("<H", 0)),
        element(0x0800, struct.pack("<H", 0)), element(0x1000, uid(sop_instance))))
    return element(0x0000, struct.pack("<L", len(elements))) + elements


A_ABORT = struct.pack(">BBL", 0x07, 0, 4) + bytes(4)
A_RELEASE_RQ = struct.pack(">BBL", 0x05, 0, 4) + bytes(4)


def _pdu_type(sock: socket.socket) -> int | None:
    """The type of the next PDU the node sends (its body read too); None once it closed."""
    header = _read(sock, 6)
    if header is None:
        return None
    kind, _, length = struct.unpack(">BBL", header)
    _read(sock, length)
    return kind


def _read(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        got = sock.recv(size - len(data))
        if not got:
            return None
        data += got
    return data


def _instance_begun(sock: socket.socket, person) -> None:
    """A C-STORE's command and the first part of its dataset, not the rest."""
    ds = synthetic_instance(person, modality="CT", rows=64, columns=64)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    sock.sendall(_p_data(1, 0x03, _store_command(str(ds.SOPInstanceUID))))
    sock.sendall(_p_data(1, 0x00, buffer.getvalue()[:2000]))


class Peers:
    """The test's connections to the node, and the node's log lines about associations that
    ended abnormally once each of theirs has ended (its thread writes its line as it ends)."""

    def __init__(self, node, caplog) -> None:
        self.node, self.caplog = node, caplog
        self.ports: set[int] = set()  # the test's connections, by their local port
        self.finished: set[int] = set()
        self.done = threading.Condition()

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.node.port), timeout=BOUND)
        self.ports.add(sock.getsockname()[1])
        return sock

    def associated(self) -> socket.socket:
        sock = self.connect()
        sock.sendall(_association_request())
        assert _pdu_type(sock) == 0x02  # A-ASSOCIATE-AC
        return sock

    def ended(self) -> list[str]:
        with self.done:
            assert self.done.wait_for(lambda: self.ports <= self.finished, BOUND), (
                f"associations still open after {BOUND} s")
        return [r.getMessage() for r in self.caplog.records if ENDED in r.getMessage()]


@pytest.fixture
def peers(node, monkeypatch, caplog) -> Peers:
    peers = Peers(node, caplog)
    run = node_module._DjangoAssociation.run

    def recording(assoc) -> None:
        try:
            run(assoc)
        finally:
            with peers.done:
                peers.finished.add(assoc.requestor.address_info.port)
                peers.done.notify_all()

    monkeypatch.setattr(node_module._DjangoAssociation, "run", recording)
    caplog.set_level("INFO", logger="nccid.imaging.node")
    return peers


@on_a_node
def test_a_peer_abort_mid_instance_is_logged_with_the_instance_left(peers, person_factory):
    person = person_factory(41)
    with peers.associated() as sock:
        _instance_begun(sock, person)
        sock.sendall(A_ABORT)
    [line] = peers.ended()
    assert line.startswith("the association from AE RTEST_PACS (site RTEST) at 127.0.0.1 ")
    assert "the peer aborted it (A-ABORT)" in line
    assert "an instance was being received: not stored, the sender should send it again" in line
    assert person.nhs_number not in line and person.family_name not in line


@on_a_node
def test_a_connection_dropped_mid_instance_is_logged_with_the_instance_left(peers, person_factory):
    with peers.associated() as sock:
        _instance_begun(sock, person_factory(42))
    [line] = peers.ended()
    assert "the connection dropped (closed without a release)" in line
    assert "an instance was being received" in line


@on_a_node
def test_a_second_association_request_is_logged(node, peers):
    with peers.associated() as sock:
        sock.sendall(_association_request())
        assert _pdu_type(sock) == 0x07  # A-ABORT
    [line] = peers.ended()
    assert "AE RTEST_PACS" in line and "a second association request (A-ASSOCIATE-RQ)" in line
    assert "instance" not in line


@on_a_node
def test_p_data_before_the_association_request_is_logged(node, peers):
    with peers.connect() as sock:
        sock.sendall(_p_data(1, 0x03, _store_command("2.25.1")))
        assert _pdu_type(sock) == 0x07
    [line] = peers.ended()
    assert line.startswith("a connection from 127.0.0.1 ended abnormally: P-DATA before its "
                           "association request")


@on_a_node
def test_a_message_on_an_unaccepted_presentation_context_is_logged(node, peers):
    with peers.associated() as sock:
        sock.sendall(_p_data(7, 0x03, _store_command("2.25.1")))
        sock.sendall(_p_data(7, 0x02, b"\x08\x00\x18\x00\x06\x00\x00\x002.25.1"))
        assert _pdu_type(sock) == 0x07
    [line] = peers.ended()
    assert "AE RTEST_PACS" in line and "presentation context 7, which was not accepted" in line


@on_a_node
@pytest.mark.parametrize("sent", [0, 10], ids=["nothing", "part of the request"])
def test_an_association_request_not_sent_within_artim_is_logged(node, peers, sent):
    """A connection held open without a whole request is closed at the ARTIM time and logged,
    whether it sent nothing or part of one: unlike a probe that closes at once, it held one of
    the node's places for connections not yet associated."""
    node.server.ae.acse_timeout = 1.0
    with peers.connect() as sock:
        sock.sendall(_association_request()[:sent])
        assert _pdu_type(sock) is None  # closed by the node
    [line] = peers.ended()
    assert line.startswith("a connection from 127.0.0.1 ended abnormally: no whole association "
                           "request within 1 s of connecting (the ARTIM timer)")


@on_a_node
def test_a_pdu_not_whole_within_its_deadline_is_logged(node, peers):
    node.server.ae.network_timeout = 1.0
    with peers.associated() as sock:
        sock.sendall(struct.pack(">BBL", 0x04, 0, 1024 * 1024) + bytes(100))  # 100 of 1 MB
        assert _pdu_type(sock) == 0x07
    [line] = peers.ended()
    assert "AE RTEST_PACS" in line and "a PDU not whole within 1 s of its first byte" in line


@on_a_node
def test_a_peer_closing_before_its_request_arrived_whole_is_logged(node, peers):
    with peers.connect() as sock:
        sock.sendall(_association_request()[:10])
    [line] = peers.ended()
    assert line.startswith("a connection from 127.0.0.1 ended abnormally: closed before its "
                           "association request arrived whole")


def test_a_title_no_site_registered_is_logged_by_its_shape():
    """Anyone may call with any title (an NHS number too): one no site registered is shown by
    its shape, as refusals show it."""
    from types import SimpleNamespace

    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="9990001006",
                                                      address="192.0.2.7"),
                            ae=SimpleNamespace(site_titles=node_module.SiteTitles()))
    assert node_module._peer_for_log(assoc) == (
        "the association from AE shaped 9999999999 (10 characters) at 192.0.2.7")


@on_a_node
def test_probes_and_releases_leave_no_line(node, peers):
    for _ in range(3):
        peers.connect().close()  # a port probe, a health check: not a byte sent
    with peers.associated() as sock:
        sock.sendall(A_RELEASE_RQ)
        assert _pdu_type(sock) == 0x06  # A-RELEASE-RP
    assert peers.ended() == []
