"""What a peer's framing costs the node is bounded, not only its data: a PDU of millions of
empty PDVs (each a Python object or three, ~35 times its size in memory), a command of empty
fragments held PDU by PDU, a dataset of one-byte fragments. Each aborts its association; the
node serves others as before."""

from __future__ import annotations

import struct

import pytest
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts

from nccid.imaging import fastpath
from nccid.imaging.fastpath import MAX_ITEMS_PER_PDU, ProtocolError, StoreFastPath

from .conftest import write_study

COMMAND, LAST = 0x01, 0x02


def _pdu(*items: tuple[int, int, bytes]) -> memoryview:
    body = b"".join(struct.pack(">LBB", len(data) + 2, context, control) + data
                    for context, control, data in items)
    return memoryview(bytearray(struct.pack(">BBL", 0x04, 0, len(body)) + body))


def test_a_pdu_of_more_items_than_any_sender_uses_is_refused_before_they_are_made():
    fast = StoreFastPath(dul=None, store=None)
    assert fast.take(_pdu(*[(1, COMMAND, b"")] * MAX_ITEMS_PER_PDU))  # still being read
    with pytest.raises(ProtocolError, match="more than 1,024 items"):
        StoreFastPath(dul=None, store=None).take(_pdu(*[(1, COMMAND, b"")] * 100_000))


def test_a_command_of_empty_fragments_reaches_the_command_limit():
    fast = StoreFastPath(dul=None, store=None)
    empty = _pdu(*[(1, COMMAND, b"")] * 1000)  # 6,006 bytes held each, no command byte
    with pytest.raises(ProtocolError, match="a command set larger than"):
        for _ in range(fastpath.MAX_COMMAND_BYTES // len(empty) + 1):
            fast.take(empty)
    assert fast.message is None


on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


def _associate(port: int):
    ae = AE(ae_title="RTEST_PACS")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", port, ae_title="NCCID")
    assert assoc.is_established
    return assoc


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def _store_command(sop_class: str, sop_instance: str) -> bytes:
    """A C-STORE-RQ command set with a dataset to follow (implicit VR, PS3.7 9.3.1.1)."""
    def uid(value: str) -> bytes:
        return value.encode() + b"\0" * (len(value) % 2)

    elements = b"".join((
        _element(0x0002, uid(sop_class)), _element(0x0100, struct.pack("<H", 0x0001)),
        _element(0x0110, struct.pack("<H", 1)), _element(0x0700, struct.pack("<H", 0)),
        _element(0x0800, struct.pack("<H", 0)), _element(0x1000, uid(sop_instance))))
    return _element(0x0000, struct.pack("<L", len(elements))) + elements


@on_a_node
@pytest.mark.parametrize(("what", "pdus", "why"), [
    ("a PDU of 100,000 empty command PDVs", lambda cx: [_pdu(*[(cx, COMMAND, b"")] * 100_000)],
     "a P-DATA-TF PDU of more than 1,024 items"),
    ("PDUs of 1,000 empty command PDVs", lambda cx: [_pdu(*[(cx, COMMAND, b"")] * 1000)] * 12,
     "a command set larger than 65,536 bytes"),
    ("a dataset of one-byte fragments", lambda cx: [
        _pdu((cx, COMMAND | LAST, _store_command("1.2.840.10008.5.1.4.1.1.2", "2.25.1")))]
        + [_pdu(*[(cx, 0x00, b"\x08")] * 1000)] * 40,
     "an instance holding more than 4,194,304 bytes of memory"),
])
def test_a_peer_whose_framing_costs_more_than_its_data_is_aborted(
        node, site, tmp_path, person_factory, monkeypatch, caplog, what, pdus, why):
    monkeypatch.setattr(fastpath, "MAX_INSTANCE_MEMORY", 4 * 1024 * 1024)  # 40 KB of data
    person = person_factory(92)
    good = write_study(tmp_path, person, count=1, patient_id=person.nhs_number)[0]
    assoc = _associate(node.port)
    context_id = next(cx.context_id for cx in assoc.accepted_contexts
                      if cx.abstract_syntax == "1.2.840.10008.5.1.4.1.1.2")
    with caplog.at_level("WARNING", logger="nccid.imaging.node"):
        try:
            for pdu in pdus(context_id):
                assoc.dul.socket.socket.sendall(bytes(pdu))
        except OSError:  # the node aborted and closed while these were still being sent
            pass
        assoc.join(timeout=20)  # the association's thread ends once the node aborted it
    assert assoc.is_aborted, what
    assert f"AE RTEST_PACS broke the P-DATA framing ({why}" in caplog.text
    again = _associate(node.port)
    assert again.send_c_store(dcmread(good)).Status == 0
    again.release()
