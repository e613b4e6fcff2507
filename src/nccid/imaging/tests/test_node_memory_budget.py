"""The node's memory for instances being received is bounded in all, not per association:
three associations each sending 960 MB without the last fragment took the node to 3 GB
(1 GB each, 32 associations). Past ``node_receive_memory_mb`` an association waits, its socket
unread, while the one that began first goes on; the budget is given back however an instance
ends (answered, aborted, dropped)."""

from __future__ import annotations

import queue
import struct
import time

import pytest
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.dsutils import encode

from nccid.imaging import fastpath
from nccid.imaging.fastpath import MemoryBudget

from .conftest import write_study

LIMIT = 1024 * 1024
FRAGMENT = 256 * 1024
BOUND = 20.0  # seconds: the tests fail if what they wait for has not happened by then
COMMAND, LAST = 0x01, 0x02

on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


def _pdu(context_id: int, control: int, data: bytes) -> bytes:
    item = struct.pack(">LBB", len(data) + 2, context_id, control) + data
    return struct.pack(">BBL", 0x04, 0, len(item)) + item


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def _uid(value: str) -> bytes:
    return value.encode() + b"\0" * (len(value) % 2)


class _Sender:
    """An association sending one C-STORE in raw PDUs, as slowly as the test says."""

    def __init__(self, port: int, path) -> None:
        ae = AE(ae_title="RTEST_PACS")
        ae.requested_contexts = StoragePresentationContexts[:100]
        self.answers: queue.Queue = queue.Queue()  # pynetdicom's own thread drops them
        self.assoc = ae.associate("127.0.0.1", port, ae_title="NCCID", evt_handlers=[
            (evt.EVT_DIMSE_RECV, lambda event: self.answers.put(event.message))])
        assert self.assoc.is_established
        ds = dcmread(path)
        context = next(cx for cx in self.assoc.accepted_contexts
                       if cx.abstract_syntax == ds.SOPClassUID)
        self.context_id = context.context_id
        implicit = context.transfer_syntax[0] == "1.2.840.10008.1.2"
        dataset = encode(ds, implicit, True)
        self.fragments = [dataset[i:i + FRAGMENT] for i in range(0, len(dataset), FRAGMENT)]
        elements = b"".join((
            _element(0x0002, _uid(ds.SOPClassUID)), _element(0x0100, struct.pack("<H", 1)),
            _element(0x0110, struct.pack("<H", 7)), _element(0x0700, struct.pack("<H", 0)),
            _element(0x0800, struct.pack("<H", 0)), _element(0x1000, _uid(ds.SOPInstanceUID))))
        self.command = _element(0x0000, struct.pack("<L", len(elements))) + elements

    def send(self, data: bytes) -> None:
        self.assoc.dul.socket.socket.sendall(data)

    def send_command(self) -> None:
        self.send(_pdu(self.context_id, COMMAND | LAST, self.command))

    def send_all_but_last(self) -> None:
        for fragment in self.fragments[:-1]:
            self.send(_pdu(self.context_id, 0x00, fragment))

    def held_before_the_last(self) -> int:
        """What its PDUs (and fragments) hold once all but the last fragment were read."""
        return (len(self.fragments) - 1) * (12 + FRAGMENT + fastpath.FRAGMENT_COST)

    def send_last_and_hear(self) -> int:
        self.send(_pdu(self.context_id, LAST, self.fragments[-1]))
        return self.answers.get(timeout=BOUND).command_set.Status


@pytest.fixture
def budget(monkeypatch):
    budget = MemoryBudget(LIMIT)
    monkeypatch.setattr(fastpath, "node_budget", lambda: budget)
    return budget


@pytest.fixture
def big_images(tmp_path, person_factory):
    person = person_factory(93)
    return [write_study(tmp_path / str(n), person, study=n, count=1, rows=1024,  # 2 MB each
                        patient_id=person.nhs_number)[0] for n in (1, 2)]


@on_a_node
def test_a_second_instance_waits_until_the_first_gives_its_memory_back(node, site, budget,
                                                                      big_images):
    first, second = (_Sender(node.port, path) for path in big_images)
    first.send_command()
    first.send_all_but_last()  # more than the budget: the first holder goes on regardless
    held = first.held_before_the_last()
    assert held > LIMIT and budget.wait_until(lambda b: b.total == held, BOUND)
    second.send_command()
    second.send_all_but_last()
    assert budget.wait_until(lambda b: b.waiting == 1, BOUND)  # its socket unread
    assert budget.total == held
    assert first.send_last_and_hear() == 0x0000
    assert second.send_last_and_hear() == 0x0000  # it went on once the first was answered
    for sender in (first, second):
        sender.assoc.release()
    assert budget.wait_until(lambda b: b.total == 0 and b.spares == 0, BOUND)
    node.drained()
    assert node.server.spool_backlog().records == 0


@on_a_node
@pytest.mark.parametrize("ending", ["abort", "drop"])
def test_an_instance_that_never_ends_gives_its_memory_back_with_its_association(
        node, site, budget, big_images, ending):
    sender = _Sender(node.port, big_images[0])
    sender.send_command()
    sender.send_all_but_last()
    assert budget.wait_until(lambda b: b.total == sender.held_before_the_last(), BOUND)
    if ending == "abort":
        sender.assoc.abort()
    else:
        sender.assoc.dul.socket.socket.close()
    assert budget.wait_until(lambda b: b.total == 0 and b.spares == 0, BOUND)


class _Clock:
    """The budget's clock (``fastpath.time``), moved on by the test: a PDU's deadline passes when
    the test says, not when a loaded machine happens to get there. A short network timeout
    instead raced the first association's own idle timeout (the same second): when that ended
    the first, the second had room and was never aborted."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead


@on_a_node
def test_an_association_waiting_past_its_deadline_is_aborted_and_logged(node, site, budget,
                                                                       big_images, caplog,
                                                                       monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(fastpath, "time", clock)
    timeout = node.server.ae.network_timeout  # each PDU's deadline, the wait for room included
    first, second = (_Sender(node.port, path) for path in big_images)
    first.send_command()
    first.send_all_but_last()
    assert budget.wait_until(lambda b: b.total == first.held_before_the_last(), BOUND)
    with caplog.at_level("WARNING", logger="nccid.imaging.node"):
        second.send_command()
        assert budget.wait_until(lambda b: b.waiting == 1, BOUND)  # its command's PDU waits
        assert not second.assoc.is_aborted
        clock.ahead = timeout  # its PDU's deadline passes (it looks every MemoryBudget.WAKE)
        second.assoc.join(BOUND)  # its thread ends once the node aborted it
    assert second.assoc.is_aborted
    assert ("AE RTEST_PACS waited for room in the node's memory for receiving (1 MB in all, "
            "node_receive_memory_mb) until its PDU's deadline: association aborted") in caplog.text
    # the rest of the PDU it waited to read is dropped, not parsed as PDUs of nonsense lengths
    assert "refused a PDU" not in caplog.text
    assert "a PDU or message the node refused" not in caplog.text
    assert budget.total == first.held_before_the_last()  # the first held its memory throughout
    first.assoc.abort()


def test_what_fits_in_an_association_allowance_never_waits():
    budget = MemoryBudget(LIMIT, allowance=256 * 1024)
    first, second = object(), object()
    assert budget.reserve(first, 3 * LIMIT, deadline=None, given_up=lambda: False)  # alone
    assert budget.shared == 3 * LIMIT - 256 * 1024
    assert budget.reserve(second, 200 * 1024, deadline=None, given_up=lambda: False)
    assert budget.shared == 3 * LIMIT - 256 * 1024  # within its allowance: no share taken
    # beyond it, the shared limit applies again: it waits, here until a deadline just gone
    assert not budget.reserve(second, 100 * 1024, deadline=0.0, given_up=lambda: False)
    budget.release(first)
    assert budget.shared == 0
    assert budget.reserve(second, 100 * 1024, deadline=None, given_up=lambda: False)
    assert budget.shared == 44 * 1024 and budget.total == 300 * 1024
    budget.release(second)
    assert (budget.total, budget.shared) == (0, 0)


@on_a_node
def test_an_echo_is_answered_while_a_large_instance_holds_the_memory(node, site, monkeypatch,
                                                                     big_images):
    """A slow multiframe past the limit held every other association's PDUs back, C-ECHO
    included, until the senders' own timeouts ended them."""
    budget = MemoryBudget(LIMIT, allowance=64 * 1024)
    monkeypatch.setattr(fastpath, "node_budget", lambda: budget)
    first = _Sender(node.port, big_images[0])
    first.send_command()
    first.send_all_but_last()
    assert budget.wait_until(lambda b: b.shared > LIMIT, BOUND)
    ae = AE(ae_title="RTEST_PACS")
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.dimse_timeout = BOUND
    echo = ae.associate("127.0.0.1", node.port, ae_title="NCCID")
    assert echo.is_established
    assert echo.send_c_echo().Status == 0x0000
    echo.release()
    assert first.send_last_and_hear() == 0x0000
    first.assoc.release()
    assert budget.wait_until(lambda b: b.total == 0, BOUND)
