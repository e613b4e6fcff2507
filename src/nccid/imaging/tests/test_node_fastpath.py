"""The node's C-STORE short path (``fastpath.py``): what it sends is what pynetdicom would
send, what it stores is what was sent (in one PDU or in many, buffers reused), and a peer
that breaks the P-DATA framing loses its association, not the node."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode_file_meta
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import MaximumLengthNotification

from nccid.imaging import fastpath
from nccid.imaging.fastpath import ProtocolError, StoreFastPath, file_meta_bytes, store_response_pdu
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import get_warehouse

from .conftest import original_sop, write_study

UIDS = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.1.1",  # even and odd lengths
        "2.25.302795629486458925367419432186427658120", "1.2.3"]


@pytest.mark.parametrize("sop_class", UIDS[:2])
@pytest.mark.parametrize("sop_instance", UIDS[2:])
@pytest.mark.parametrize(("message_id", "status", "context_id"),
                         [(1, 0x0000, 1), (65535, 0xC000, 255), (300, 0xA700, 17)])
def test_the_store_answer_is_the_pdu_pynetdicom_would_send(sop_class, sop_instance, message_id,
                                                           status, context_id):
    response = C_STORE()
    response.MessageIDBeingRespondedTo = message_id
    response.AffectedSOPClassUID = sop_class
    response.AffectedSOPInstanceUID = sop_instance
    response.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(response)
    expected = [P_DATA_TF(p).encode() for p in message.encode_msg(context_id, 16384)]
    assert [store_response_pdu(context_id, message_id, sop_class, sop_instance, status)] == expected


@pytest.mark.parametrize("sop_instance", UIDS)
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.201"])
def test_the_file_meta_is_the_one_pynetdicom_gives_a_received_dataset(sop_instance, syntax):
    meta = create_file_meta(sop_class_uid=UIDS[0], sop_instance_uid=sop_instance,
                            transfer_syntax=syntax)
    assert file_meta_bytes(UIDS[0], sop_instance, syntax) == (
        b"\x00" * 128 + b"DICM" + encode_file_meta(meta))


def _pdu(*items: tuple[int, int, bytes]) -> memoryview:
    body = b"".join(struct.pack(">LBB", len(data) + 2, context, control) + data
                    for context, control, data in items)
    return memoryview(bytearray(struct.pack(">BBL", 0x04, 0, len(body)) + body))


@pytest.mark.parametrize(("items", "why"), [
    ([(1, 0x00, b"data")], "before any command"),
    ([(1, 0x03, struct.pack("<HHL", 0, 0x0100, 3) + b"abc")],  # Command Field of 3 bytes
     "unreadable command set"),
])
def test_broken_framing_at_a_message_start_is_a_protocol_error(items, why):
    with pytest.raises(ProtocolError, match=why):
        StoreFastPath(dul=None, store=None).take(_pdu(*items))


@pytest.mark.parametrize("declared", [1, 0xFFFF])  # shorter than an item header; past the end
def test_an_item_length_that_does_not_fit_its_pdu_goes_to_pynetdicoms_decoder(declared):
    """At a message's start a malformed PDU is pynetdicom's to refuse, as it always was."""
    pdu = bytearray(_pdu((1, 0x01, b"abcd")))
    struct.pack_into(">L", pdu, 6, declared)
    assert StoreFastPath(dul=None, store=None).take(memoryview(pdu)) is False


def test_buffers_are_reused_only_once_nothing_refers_to_them():
    fast = StoreFastPath(dul=None, store=None)
    first = fast.buffer(1000)
    fast.recycle(first)
    again = fast.buffer(600)
    assert again.obj is first.obj and len(again) == 600  # the spare, cut to the size asked
    assert fast.buffer(600).obj is not first.obj  # in use: a fresh one


# -- on a real node -----------------------------------------------------------------------------
on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


def _associate(port: int, pdu_limit: int | None = None):
    ae = AE(ae_title="RTEST_PACS")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", port, ae_title="NCCID")
    assert assoc.is_established
    if pdu_limit is not None:  # send in PDUs of this size, as dcmtk does (128 KB)
        for item in assoc.acceptor.user_information:
            if isinstance(item, MaximumLengthNotification):
                item.maximum_length_received = pdu_limit
        assert assoc.dimse.maximum_pdu_size == pdu_limit
    return assoc


def _pixels_stored(keyring, path) -> bytes:
    record = ImageRecord.objects.get(sop_uid=keyring.uid(original_sop(path)))
    return dcmread(BytesIO(get_warehouse().read(record.storage_key))).PixelData


@on_a_node
@pytest.mark.parametrize("pdu_limit", [None, 4096])
def test_datasets_in_one_pdu_or_in_many_are_stored_byte_for_byte(node, site, keyring, tmp_path,
                                                                  person_factory, pdu_limit):
    """Sizes that grow and shrink, so that every buffer is reused for another message."""
    person = person_factory(40)
    files = []
    for study, rows in enumerate([96, 16, 64, 8, 96, 32], start=1):
        files += write_study(tmp_path / str(study), person, study=study, count=1, rows=rows,
                             patient_id=person.nhs_number)
    assoc = _associate(node.port, pdu_limit)
    assert [assoc.send_c_store(dcmread(f)).Status for f in files] == [0] * len(files)
    assoc.release()
    node.drained()
    for path in files:
        assert _pixels_stored(keyring, path) == dcmread(path).PixelData


@on_a_node
def test_a_peer_that_breaks_the_framing_mid_message_is_aborted_and_the_node_serves_on(
        node, site, keyring, tmp_path, person_factory, caplog):
    person = person_factory(41)
    good = write_study(tmp_path, person, count=1, patient_id=person.nhs_number)[0]
    assoc = _associate(node.port)
    command = dcmread(good)
    # A C-STORE command in its first fragment, then a command fragment where data must come.
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = command.SOPClassUID
    request.AffectedSOPInstanceUID = command.SOPInstanceUID
    request.Priority = 2
    request.DataSet = BytesIO(b"\x00" * 8)
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    context_id = assoc._get_valid_context(command.SOPClassUID, command.file_meta.TransferSyntaxUID,
                                          "scu").context_id
    pdus = [P_DATA_TF(p).encode() for p in message.encode_msg(context_id, 16384)]
    with caplog.at_level("WARNING", logger="nccid.imaging.node"):
        assoc.dul.socket.send(pdus[0])  # the command
        assoc.dul.socket.send(bytes(_pdu((context_id, 0x01, b"\x00\x00"))))  # a command again
        assoc.join(timeout=20)  # the association's thread ends once the node aborted it
    assert assoc.is_aborted
    assert "broke the P-DATA framing (a command fragment arrived inside a dataset)" in caplog.text
    assert node.server.spool_backlog().records == 0  # nothing half-received was kept
    again = _associate(node.port)
    assert again.send_c_store(dcmread(good)).Status == 0
    again.release()
    node.drained()
    assert _pixels_stored(keyring, good) == dcmread(good).PixelData


@on_a_node
def test_an_instance_larger_than_the_limit_aborts_its_association(node, site, tmp_path,
                                                                  person_factory, monkeypatch,
                                                                  caplog):
    """The dataset is held in memory until its last fragment: a bound, as for any PDU."""
    monkeypatch.setattr(fastpath, "MAX_INSTANCE_BYTES", 64 * 1024)
    person = person_factory(42)
    big, small = (write_study(tmp_path / str(rows), person, study=rows, count=1, rows=rows,
                              patient_id=person.nhs_number)[0] for rows in (256, 16))
    assoc = _associate(node.port, 16384)
    with caplog.at_level("WARNING", logger="nccid.imaging.node"):
        assert "Status" not in assoc.send_c_store(dcmread(big))  # no answer: aborted
        assoc.join(timeout=20)  # the association's thread ends once the node aborted it
    assert not assoc.is_established
    assert "(an instance larger than 65,536 bytes): association aborted" in caplog.text
    again = _associate(node.port)
    assert again.send_c_store(dcmread(small)).Status == 0
    again.release()


@on_a_node
def test_without_the_short_path_pynetdicom_stores_the_same_files(node, site, keyring, tmp_path,
                                                                person_factory, monkeypatch):
    """``handle_store`` (pynetdicom's path) gives the same file head and the same result."""
    from nccid.imaging.node import _QuickDUL

    monkeypatch.setattr(_QuickDUL, "_fast_path", lambda self: None)
    person = person_factory(43)
    files = write_study(tmp_path, person, count=2, rows=64, patient_id=person.nhs_number)
    assoc = _associate(node.port, 4096)
    assert [assoc.send_c_store(dcmread(f)).Status for f in files] == [0, 0]
    assoc.release()
    node.drained()
    for path in files:
        assert _pixels_stored(keyring, path) == dcmread(path).PixelData


@on_a_node
def test_a_command_set_that_is_no_dimse_message_is_answered_with_an_abort(node, site, tmp_path,
                                                                        person_factory, caplog):
    """pynetdicom's reactor thread died on it (AttributeError: no CommandField) and the peer
    heard a bare close: it is an A-ABORT, one log line, and the node serves on."""
    from pynetdicom import evt

    received = []
    ae = AE(ae_title="RTEST_PACS")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", node.port, ae_title="NCCID", evt_handlers=[
        (evt.EVT_PDU_RECV, lambda event: received.append(type(event.pdu).__name__))])
    assert assoc.is_established
    context_id = assoc.accepted_contexts[0].context_id
    with caplog.at_level("WARNING", logger="nccid"):
        assoc.dul.socket.send(bytes(_pdu((context_id, 0x03, bytes.fromhex("00000000ffffffff")),
                                         (context_id, 0x02, b"\x00" * 64))))
        assoc.join(timeout=20)  # the association's thread ends once the node aborted it
    assert "A_ABORT_RQ" in received
    assert ("AE RTEST_PACS broke the P-DATA framing (a command set that is no DIMSE message"
            in caplog.text)
    assert not [record for record in caplog.records if record.exc_info]
    person = person_factory(44)
    good = write_study(tmp_path, person, count=1, patient_id=person.nhs_number)[0]
    again = _associate(node.port)
    assert again.send_c_store(dcmread(good)).Status == 0
    again.release()
