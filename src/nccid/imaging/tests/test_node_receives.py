"""The DICOM node, a real pynetdicom SCP on a free port, fed by dcmtk and pynetdicom clients.

The node acknowledges from its spool and stores in the background: each test waits for the
drain (``node.drained()``, a bounded wait on a condition) before looking at what was stored."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from io import BytesIO

import pytest
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from nccid.imaging.dcmtk import dcmtk_tool
from nccid.imaging.models import StudyReceipt
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import get_warehouse

from .conftest import original_sop, synthetic_instance, to_bytes, write_study

STORESCU = dcmtk_tool("storescu")  # dcmtk's, not pynetdicom's script of that name

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "vault"])

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def _storescu_dcmtk(port: int, files, calling: str = "RTEST_PACS") -> subprocess.CompletedProcess:
    return subprocess.run([STORESCU, "-aet", calling, "-aec", "NCCID", "127.0.0.1", str(port),
                           *map(str, files)], env=DCMTK_ENV, capture_output=True, text=True,
                          timeout=60)


def _stored(keyring, files) -> list[ImageRecord]:
    uids = [keyring.uid(original_sop(f)) for f in files]
    return list(ImageRecord.objects.filter(sop_uid__in=uids))


def _assert_deidentified(record: ImageRecord, person) -> None:
    data = get_warehouse().read(record.storage_key)
    ds = dcmread(BytesIO(data))
    assert ds.PatientID == record.pseudonym and str(ds.PatientName) == record.pseudonym
    for needle in person.identifiers():
        assert needle.encode() not in data


@pytest.mark.dcmtk
def test_dcmtk_storescu_study_lands_deidentified(node, site, keyring, tmp_path, person_factory):
    person = person_factory(21)
    files = write_study(tmp_path, person, count=4, patient_id=person.nhs_number)
    result = _storescu_dcmtk(node.port, files)
    assert result.returncode == 0, result.stderr
    node.drained()
    records = _stored(keyring, files)
    assert len(records) == 4
    assert {r.pseudonym for r in records} == {keyring.pseudonym(person.nhs_number)}
    _assert_deidentified(records[0], person)


def test_pynetdicom_storescu_study_lands_deidentified(node, site, keyring, tmp_path,
                                                      person_factory):
    person = person_factory(22)
    files = write_study(tmp_path / "study", person, count=3, modality="DX")
    result = subprocess.run(
        [sys.executable, "-m", "pynetdicom", "storescu", "127.0.0.1", str(node.port),
         str(tmp_path / "study"), "-aet", "RTEST_PACS", "-aec", "NCCID", "-r"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    node.drained()
    records = _stored(keyring, files)
    assert len(records) == 3
    _assert_deidentified(records[0], person)


@pytest.mark.dcmtk
def test_echo_answers_and_unknown_ae_title_is_refused(node, site, caplog):
    ok = subprocess.run(["echoscu", "-aet", "RTEST_PACS", "-aec", "NCCID", "127.0.0.1", str(node.port)],
                        env=DCMTK_ENV, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    heard = _Heard("refused an association from AE STRANGER")
    logging.getLogger("nccid.imaging.node").addHandler(heard)
    try:
        refused = subprocess.run(["echoscu", "-aet", "STRANGER", "-aec", "NCCID", "127.0.0.1",
                                  str(node.port)], env=DCMTK_ENV, capture_output=True, text=True,
                                 timeout=30)
        assert refused.returncode != 0
        assert "Rejected" in refused.stderr or "rejected" in refused.stderr.lower()
        # The node says so too: pynetdicom sends the rejection first, then tells the handler.
        assert heard.event.wait(timeout=20)
    finally:
        logging.getLogger("nccid.imaging.node").removeHandler(heard)


class _Heard(logging.Handler):
    """Sets ``event`` once a record whose message contains ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def _associate(port: int, calling: str, contexts=None):
    ae = AE(ae_title=calling)
    for cx in contexts or [Verification]:
        ae.add_requested_context(cx)
    return ae.associate("127.0.0.1", port, ae_title="NCCID")


def test_a_site_added_while_running_is_accepted_without_restart(node, site):
    from nccid.accounts.services import add_site

    before = _associate(node.port, "NEWSITE_PACS")
    assert before.is_rejected
    add_site("NEWSITE", "New Site Hospital", "NEWSITE_PACS")
    after = _associate(node.port, "NEWSITE_PACS")
    assert after.is_established
    assert after.send_c_echo().Status == 0x0000
    after.release()


@pytest.mark.parametrize("declared", [64 * 1024 * 1024, 0xFFFFFFFF])
def test_a_pdu_declaring_more_than_the_node_takes_is_aborted_before_anything_is_read(
        node, site, declared):
    """Six bytes from anyone who can connect (no AE title yet) must not make the node set
    aside what they declare: the association is aborted at once and the node serves on."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=20) as attacker:
        attacker.sendall(struct.pack(">BBL", 0x01, 0, declared))  # A-ASSOCIATE-RQ header
        answer = attacker.recv(6)
    assert answer[:1] == b"\x07"  # A-ABORT, not a wait for the bytes declared
    assoc = _associate(node.port, "RTEST_PACS")
    assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_a_c_store_whose_command_cannot_be_read_gets_a_failure_at_once(node, site, tmp_path,
                                                                        person_factory,
                                                                        monkeypatch):
    """pynetdicom drops a request it cannot read and its sender would wait for an answer
    until a timeout; the node answers it, and the association carries on."""
    from pynetdicom import _config

    person = person_factory(27)
    ds = synthetic_instance(person, patient_id=person.nhs_number)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "\x00\x00"
    unreadable = tmp_path / "nul.dcm"
    unreadable.write_bytes(to_bytes(ds))
    good = write_study(tmp_path / "good", person, count=1, modality="DX",
                       patient_id=person.nhs_number)[0]
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the file as it is
    ae = AE(ae_title="RTEST_PACS")
    ae.dimse_timeout = 30
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="NCCID")
    assert assoc.is_established
    assert assoc.send_c_store(unreadable).Status == 0xC000
    assert assoc.send_c_store(good).Status == 0x0000
    assoc.release()


def _send(port: int, datasets, abort_after: int | None = None) -> list[int]:
    """C-STORE each dataset in one association; abort it after ``abort_after`` instances."""
    ae = AE(ae_title="RTEST_PACS")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", port, ae_title="NCCID")
    assert assoc.is_established
    statuses = []
    for i, ds in enumerate(datasets):
        if abort_after is not None and i == abort_after:
            assoc.abort()
            return statuses
        statuses.append(assoc.send_c_store(ds).Status)
    assoc.release()
    return statuses


def test_a_study_sent_twice_is_stored_once(node, site, keyring, tmp_path, person_factory):
    person = person_factory(23)
    files = write_study(tmp_path, person, count=3, patient_id=person.nhs_number)
    datasets = [dcmread(f) for f in files]
    assert _send(node.port, datasets) == [0, 0, 0]
    assert _send(node.port, datasets) == [0, 0, 0]  # duplicates are success for the sender
    node.drained()
    assert len(_stored(keyring, files)) == 3
    assert ImageRecord.objects.filter(pseudonym=keyring.pseudonym(person.nhs_number)).count() == 3


def test_a_dropped_association_then_resent_stores_each_file_once(node, site, keyring, tmp_path,
                                                                 person_factory):
    person = person_factory(24)
    files = write_study(tmp_path, person, count=6, patient_id=person.nhs_number)
    datasets = [dcmread(f) for f in files]
    assert _send(node.port, datasets, abort_after=3) == [0, 0, 0]
    node.drained()
    assert len(_stored(keyring, files)) == 3
    assert _send(node.port, datasets) == [0] * 6
    node.drained()
    records = _stored(keyring, files)
    assert len(records) == 6 and len({r.sop_uid for r in records}) == 6
    for record in records:
        assert get_warehouse().exists(record.storage_key)


def test_hostile_datasets_fail_and_the_node_keeps_serving(node, site, keyring, tmp_path,
                                                          person_factory):
    person = person_factory(25)
    files = write_study(tmp_path, person, count=2, patient_id=person.nhs_number)
    broken = dcmread(files[0])
    broken.PixelData = broken.PixelData[:100]  # declared 32x32x16 bits, 100 bytes present
    no_uid = dcmread(files[1])
    del no_uid.StudyInstanceUID
    statuses = _send(node.port, [broken, no_uid])
    assert statuses == [0xC000, 0xC000]  # refused at once, before anything is spooled
    assert node.server.spool_backlog().records == 0
    node.drained()
    assert not _stored(keyring, files)
    assert _send(node.port, [dcmread(f) for f in files]) == [0, 0]  # the next association works
    node.drained()
    assert len(_stored(keyring, files)) == 2


def test_a_file_refused_after_its_acknowledgement_is_logged_and_the_node_carries_on(
        node, site, keyring, tmp_path, person_factory, caplog):
    person = person_factory(26)
    files = write_study(tmp_path, person, count=2, patient_id=person.nhs_number)
    nameless = dcmread(files[0])
    del nameless.PatientID  # structurally sound: acknowledged, then refused by the drain
    del nameless.OtherPatientIDs
    with caplog.at_level("WARNING", logger="nccid.imaging.node"):
        assert _send(node.port, [nameless]) == [0]
        node.drained()
    refused = [r.getMessage() for r in caplog.records if "was rejected" in r.getMessage()]
    assert len(refused) == 1  # with the intake's reason, which names no value
    assert refused[0].startswith("site RTEST: an instance was rejected: no Patient ID")
    assert not _stored(keyring, files)
    # The site sees it on its receipts (My uploads, the API): counted, refused, and why.
    receipt = StudyReceipt.objects.get(site=site, study_uid=keyring.uid(str(nameless.StudyInstanceUID)))
    assert (receipt.instances, receipt.rejected, receipt.stored) == (1, 1, 0)
    assert receipt.status == "rejected" and receipt.problem.startswith("no Patient ID")
    assert _send(node.port, [dcmread(files[1])]) == [0]
    node.drained()
    assert len(_stored(keyring, files)) == 1
    receipt.refresh_from_db()
    assert (receipt.instances, receipt.rejected, receipt.stored) == (2, 1, 1)
    assert receipt.status == "waiting"  # one stored: the study waits for its clinical record


@pytest.mark.dcmtk
def test_a_withdrawn_patient_sent_to_the_node_is_refused_and_nothing_kept(
        node, site, keyring, tmp_path, person_factory, make_user):
    from nccid.identity.models import VaultEntry
    from nccid.withdrawal.services import REFUSAL, withdraw

    person = person_factory(27)
    pseudonym = keyring.pseudonym(person.nhs_number)
    withdraw(make_user("data-manager"), pseudonym, "Patient objected", refresh=False)
    files = write_study(tmp_path, person, count=3, patient_id=person.nhs_number)
    result = _storescu_dcmtk(node.port, files)
    assert result.returncode == 0, result.stderr  # acknowledged from the spool, then refused
    node.drained()
    assert not _stored(keyring, files)
    assert not VaultEntry.objects.filter(pseudonym=pseudonym).exists()
    receipt = StudyReceipt.objects.get(site=site)
    assert (receipt.instances, receipt.rejected, receipt.status, receipt.problem) == (
        3, 3, "rejected", REFUSAL)


def test_non_conformant_uids_from_a_sender_are_accepted_and_replaced(node, site, keyring,
                                                                     tmp_path, person_factory):
    """Real PACS send UIDs with leading zeros in a component; pydicom would refuse them if
    anything in the node switched its validation to strict (as to_json_dict does)."""
    person = person_factory(27)
    files = write_study(tmp_path, person, count=4, patient_id=person.nhs_number)
    datasets = [dcmread(f) for f in files]
    for i, ds in enumerate(datasets):
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7433.0100829.2.1.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    assert _send(node.port, datasets) == [0] * 4
    node.drained()
    uids = [keyring.uid(str(ds.SOPInstanceUID)) for ds in datasets]
    assert ImageRecord.objects.filter(sop_uid__in=uids).count() == 4
    assert all(u.startswith("2.25.") for u in uids)


def test_an_idle_node_keeps_no_spare_segments(node, site, keyring, tmp_path, person_factory,
                                              monkeypatch):
    """Drained segments are kept to be overwritten while files arrive (old records,
    encrypted); once nothing has arrived for a while they are deleted."""
    from nccid.imaging import node as node_module

    monkeypatch.setattr(node_module, "SPARES_IDLE_SECONDS", 0.2)
    person = person_factory(28)
    files = write_study(tmp_path, person, count=3, patient_id=person.nhs_number)
    assert _send(node.port, [dcmread(f) for f in files]) == [0, 0, 0]
    node.drained()
    spool = node.server.spool
    deadline = time.monotonic() + 30
    while spool.has_spares and time.monotonic() < deadline:
        spool.wait_for_more(spool.appends, 0.05)  # a bounded poll of the drain's idle step
    assert not spool.has_spares
    assert not list(spool.directory.glob("spare-*.log"))
    assert len(_stored(keyring, files)) == 3


@pytest.mark.dcmtk
def test_every_association_thread_closes_its_database_connection(node, site, tmp_path,
                                                                 person_factory, monkeypatch):
    """A node serves for months: each association's threads (pynetdicom's network thread,
    where the C-STORE short path looks the site up, and the association's own) close their
    database connections when they end, rather than leave them to the garbage collector.
    (SQLite's in-memory test database ignores a close: the closing itself is what is seen.)"""
    from django.db import connections
    from django.db.backends.signals import connection_created

    opened, closed = [], []
    close_all = connections.close_all

    def record(sender, connection, **kwargs):
        opened.append(threading.current_thread())

    def closing() -> None:
        closed.append(threading.current_thread())
        close_all()

    monkeypatch.setattr(connections, "close_all", closing)
    connection_created.connect(record)
    try:
        person = person_factory(24)
        files = write_study(tmp_path, person, count=2, patient_id=person.nhs_number)
        result = _storescu_dcmtk(node.port, files)
        assert result.returncode == 0, result.stderr
        node.drained()
    finally:
        connection_created.disconnect(record)
    network = [t for t in opened if "run_reactor" in t.name or "Acceptor" in t.name]
    assert any("run_reactor" in thread.name for thread in network)
    for thread in network:
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert thread in closed, f"{thread.name} ended with its connection open"
