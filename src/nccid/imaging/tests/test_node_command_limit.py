"""A command set is held until its last fragment: one larger than any real command (a few
hundred bytes) aborts its association, logged with the peer's AE title and nothing of what it
sent; the node serves other associations as before."""

from __future__ import annotations

import struct

import pytest
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts

from nccid.imaging import fastpath
from nccid.imaging.fastpath import MAX_COMMAND_BYTES, ProtocolError, StoreFastPath

from .conftest import write_study

FRAGMENT = 16 * 1024
COMMAND, NOT_LAST = 0x01, 0x00


def _pdu(context_id: int, control: int, data: bytes) -> memoryview:
    item = struct.pack(">LBB", len(data) + 2, context_id, control) + data
    return memoryview(bytearray(struct.pack(">BBL", 0x04, 0, len(item)) + item))


def test_a_command_set_over_the_limit_is_a_protocol_error_and_nothing_of_it_is_kept():
    """The limit counts what is held: the fragments, their PDVs' and PDUs' headers."""
    fast = StoreFastPath(dul=None, store=None)
    fits, framing = 4, 6 + 6  # a PDU's header and its one PDV's
    for _ in range(fits):  # up to the limit: still being read
        assert fast.take(_pdu(1, COMMAND | NOT_LAST, bytes(MAX_COMMAND_BYTES // fits - framing)))
    assert fast.message.command_cost == MAX_COMMAND_BYTES
    with pytest.raises(ProtocolError, match=f"a command set larger than {MAX_COMMAND_BYTES:,} "
                                            "bytes"):
        fast.take(_pdu(1, COMMAND | NOT_LAST, b""))  # an empty fragment: its headers pass it
    assert fast.message is None  # the command and the PDUs held with it are let go


def test_a_command_in_one_pdu_over_the_limit_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="a command set larger than"):
        StoreFastPath(dul=None, store=None).take(
            _pdu(1, COMMAND | 0x02, bytes(MAX_COMMAND_BYTES + 1)))


on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


def _associate(port: int):
    ae = AE(ae_title="RTEST_PACS")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", port, ae_title="NCCID")
    assert assoc.is_established
    return assoc


@on_a_node
def test_a_peer_sending_an_endless_command_is_aborted_and_the_node_serves_on(
        node, site, tmp_path, person_factory, monkeypatch, caplog):
    monkeypatch.setattr(fastpath, "MAX_COMMAND_BYTES", 4 * FRAGMENT)
    person = person_factory(91)
    good = write_study(tmp_path, person, count=1, patient_id=person.nhs_number)[0]
    content = person.nhs_number.encode("ascii") * (FRAGMENT // 10)  # must never be logged
    assoc = _associate(node.port)
    context_id = assoc.accepted_contexts[0].context_id
    with caplog.at_level("WARNING", logger="nccid.imaging.node"):
        for _ in range(4):  # the fourth passes the limit, with its headers
            assoc.dul.socket.send(bytes(_pdu(context_id, COMMAND | NOT_LAST, content)))
        assoc.join(timeout=20)  # the association's thread ends once the node aborted it
    assert assoc.is_aborted
    assert ("AE RTEST_PACS broke the P-DATA framing (a command set larger than 65,536 bytes "
            "(its fragments' headers counted)): association aborted") in caplog.text
    assert person.nhs_number not in caplog.text
    assert node.server.spool_backlog().records == 0
    again = _associate(node.port)
    assert again.send_c_store(dcmread(good)).Status == 0
    again.release()
