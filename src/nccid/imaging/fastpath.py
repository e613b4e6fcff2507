"""The node's short path for C-STORE requests: handled on the connection's own thread.

pynetdicom takes a received image through four hands: its network thread decodes each
P-DATA-TF PDU into new objects (the value bytes copied), its DIMSE layer appends every
fragment to a ``BytesIO`` (copied again), the association thread polls for the finished
message every millisecond, and the answer goes back through a queue that the network thread
polls in turn. A bare pynetdicom receiver got 90-110 MB/s here where dcmtk's ``storescp``
got 280-420 MB/s.

This path takes a C-STORE request as its PDUs arrive, on the network thread:

- the dataset stays in the buffers the PDUs were read into, as views, until it is handled;
- the command is decoded, and judged valid or not, by pynetdicom's own message classes;
- the store handler runs there and then, and the answer is sent at once.

Everything else goes through pynetdicom: association negotiation, C-ECHO, release, abort, any
other message, and a request on a context or of a SOP class the node does not serve as
storage. The PDUs held while the command was being read are handed to it as they came.
The answer and the file meta are encoded here (a few fixed elements; pynetdicom's encoder
took a millisecond per answer). ``test_node_fastpath`` pins both byte for byte to
pynetdicom's and pydicom's encodings.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from io import BytesIO

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_messages import _MESSAGE_TYPES, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import decode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from nccid.memory import give_memory_back

log = logging.getLogger("nccid.imaging.node")

# A store handler: (association, a maker of the file's head (preamble, DICM, file meta), the
# dataset's bytes as received, in fragments) -> (status, Error Comment: "" for none).
StoreHandler = Callable[[object, Callable[[], bytes], list[memoryview]], tuple[int, str]]

C_STORE_RQ_FIELD = 0x0001
NO_DATASET = 0x0101
UNABLE_TO_PROCESS = 0xC211  # what pynetdicom answers when a handler raises
MAX_INSTANCE_BYTES = 1 << 30  # a larger dataset aborts the association (it is held in memory)
# What a dataset costs in memory: the PDUs its fragments lie in, and objects for each fragment
# (a memoryview and its list slot). Real senders' framing adds under 2 %; a peer sending tiny
# fragments makes each byte cost hundreds, so the memory held is bounded as well.
FRAGMENT_COST = 200
MAX_INSTANCE_MEMORY = MAX_INSTANCE_BYTES + MAX_INSTANCE_BYTES // 8
# A command set is a few hundred bytes (a handful of UIDs, numbers and AE titles; PS3.7 has no
# element longer than 64 characters but an attribute list); pynetdicom sets no limit. A larger
# one aborts the association: it and the PDUs it came in are held until its last fragment.
# Counted with its PDVs' headers and the held PDUs' own: a command of empty fragments is no
# smaller to hold than its framing.
MAX_COMMAND_BYTES = 64 * 1024
# A real sender puts one or two PDVs in a PDU; each costs the node Python objects (a PDU of
# 16 MB holds 2.8 million empty ones), so a PDU of more aborts the association.
MAX_ITEMS_PER_PDU = 1024
_PDU_HEADER = _ITEM_HEADER = 6
SPARE_BYTES = 24 * 1024 * 1024  # PDU buffers kept for the next message, per association
# An instance that held this much, or an association ending with this much (an unfinished
# instance, spare buffers), gives its memory back to the system: the C heap kept a 600 MB
# instance's freed PDU buffers, 650 MB, for the process.
GIVE_BACK_BYTES = 16 * 1024 * 1024
_COMMAND, _LAST = 0x01, 0x02  # the message control header's bits (PS3.8 E.2)
_ITEM = struct.Struct(">LBB")  # PDV item: length, presentation context ID, control header
_LENGTH = struct.Struct(">L")


class ProtocolError(Exception):
    """The peer broke the P-DATA framing in the middle of a message: abort the association."""


class NoRoom(Exception):
    """The node's memory for receiving stayed full until the PDU's deadline: abort (logged)."""


class MemoryBudget:
    """The memory the node's associations hold in PDUs being received, in all (a setting,
    ``node_receive_memory_mb``). An association reserves a PDU's buffer before reading it: past
    the limit it waits, its socket unread (the sender's TCP window fills: back-pressure), until
    others give memory back or until the PDU's deadline, when it is aborted. The association
    that has held memory longest (an instance begun first) never waits, so one instance larger
    than the limit is still received when alone, and waiting ones always end: each waits for
    that one to finish. Nothing is lost: an instance not yet whole was never acknowledged."""

    WAKE = 0.5  # seconds: a waiting association looks whether it was told to end meanwhile

    def __init__(self, limit: int, allowance: int = 0) -> None:
        self.limit = limit
        # Each association's first ``allowance`` bytes are its own, outside the limit: a C-ECHO,
        # a command, an X-ray in one PDU never wait behind a large instance coming slowly
        # (senders' own timeouts, 30-60 s, ended them first).
        self.allowance = allowance
        self.total = 0  # held by associations, in PDU buffers and fragments
        self.shared = 0  # of which beyond the associations' allowances: what the limit bounds
        self.spares = 0  # in the associations' spare buffers (kept only while there is room)
        self.waiting = 0
        self._held: dict[object, int] = {}  # holder -> bytes, in the order they began holding
        self._changed = threading.Condition()

    def reserve(self, holder: object, size: int, deadline: float | None,
                given_up: Callable[[], bool], spare: int = 0) -> bool:
        """Add ``size`` to ``holder``'s bytes (``spare`` of them leaving the spares), waiting
        while they do not fit; False if ``deadline`` (``time.monotonic``) passed first, or
        ``given_up()``."""
        with self._changed:
            if not self._fits(holder, size):
                self.waiting += 1
                self._changed.notify_all()
                try:
                    while not self._fits(holder, size):
                        wait = self.WAKE if deadline is None else deadline - time.monotonic()
                        if wait <= 0 or given_up():
                            return False
                        self._changed.wait(min(wait, self.WAKE))
                finally:
                    self.waiting -= 1
            self.spares -= spare
            self._add(holder, size)
            return True

    def charge(self, holder: object, size: int) -> None:
        """Add ``size`` to ``holder``'s bytes without waiting (what a PDU read brought)."""
        with self._changed:
            self._add(holder, size)

    def release(self, holder: object, size: int | None = None, spare: int = 0,
                spares_gone: int = 0) -> bool:
        """Take ``size`` (None: all) from ``holder``'s bytes; True if a spare buffer of ``spare``
        bytes may be kept (there is room for it)."""
        with self._changed:
            held = self._held.get(holder, 0)
            size = held if size is None else min(size, held)
            if held > size:
                self._held[holder] = held - size  # its place in the order kept
            else:
                self._held.pop(holder, None)
            self.total -= size
            self.shared -= self._beyond(held) - self._beyond(held - size)
            self.spares -= spares_gone
            keep = spare > 0 and self.total + self.spares + spare <= self.limit
            if keep:
                self.spares += spare
            self._changed.notify_all()
            return keep

    def held_by(self, holder: object) -> int:
        with self._changed:
            return self._held.get(holder, 0)

    def wait_until(self, predicate: Callable[[MemoryBudget], bool], timeout: float) -> bool:
        """Wait (up to ``timeout`` seconds) until ``predicate(budget)``: for tests, monitoring."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def _fits(self, holder: object, size: int) -> bool:
        held = self._held.get(holder, 0)
        more = self._beyond(held + size) - self._beyond(held)
        return (more == 0 or self.shared + more <= self.limit or not self._held
                or next(iter(self._held)) is holder)

    def _add(self, holder: object, size: int) -> None:
        held = self._held.get(holder, 0)
        self._held[holder] = held + size
        self.total += size
        self.shared += self._beyond(held + size) - self._beyond(held)
        self._changed.notify_all()

    def _beyond(self, held: int) -> int:
        return max(0, held - self.allowance)


# One PDU of the largest size the node negotiates (16 MB, node.MAXIMUM_PDU), with its
# fragments' cost: 32 associations hold at most 0.5 GB so, beside the shared limit.
ASSOCIATION_ALLOWANCE = 17 * 1024 * 1024
_node_budget: MemoryBudget | None = None
_node_budget_lock = threading.Lock()


def node_budget() -> MemoryBudget:
    """The process's ``MemoryBudget``, sized by the ``node_receive_memory_mb`` setting."""
    global _node_budget
    with _node_budget_lock:
        if _node_budget is None:
            from nccid.config import get_settings

            _node_budget = MemoryBudget(get_settings().node_receive_memory_mb * 1024 * 1024,
                                        allowance=ASSOCIATION_ALLOWANCE)
        return _node_budget


class _Message:
    """A DIMSE message being received: its command's bytes, then its dataset's fragments."""

    __slots__ = ("context_id", "command", "command_cost", "held", "request", "fragments", "size",
                 "buffers", "memory")

    def __init__(self, context_id: int) -> None:
        self.context_id = context_id
        self.command = bytearray()
        self.command_cost = 0  # its bytes, its PDVs' headers and the held PDUs' headers
        self.held: list[bytes] = []  # PDUs to give pynetdicom if it is not ours
        self.request: C_STORE | None = None  # set once the command says "C-STORE, ours"
        self.fragments: list[memoryview] = []
        self.size = 0
        self.buffers: list[memoryview] = []  # the PDUs it lies in, back to the pool at its end
        self.memory = 0  # what its dataset holds: its PDUs' buffers, FRAGMENT_COST per fragment


class StoreFastPath:
    """Takes the P-DATA-TF PDUs of one association; ``take`` says whether it kept a PDU.

    PDUs are read into ``buffer()``s: a message's dataset stays in them until it is handled,
    then they serve the next message (allocating and zeroing fresh memory for every 128 KB
    PDU cost more than reading it)."""

    def __init__(self, dul, store: StoreHandler, budget: MemoryBudget | None = None) -> None:
        self.dul = dul
        self.store = store
        self.budget = budget or node_budget()
        self._owed = 0  # fragments' cost to charge to the budget once the PDU is taken
        self.message: _Message | None = None
        self.passing = False  # pynetdicom has the current message: it gets every PDU to its end
        self._passing_needs_data = False
        self._spares: list[bytearray] = []

    def buffer(self, size: int, deadline: float | None = None) -> memoryview:
        """A buffer of ``size`` bytes to read a PDU into (give it to ``take``), once the node's
        ``MemoryBudget`` has room for it; ``NoRoom`` if it had none by ``deadline``."""
        fitting = [spare for spare in self._spares if len(spare) >= size]
        chosen = min(fitting, key=len) if fitting else None
        spare = 0 if chosen is None else len(chosen)
        if not self.budget.reserve(self, spare or size, deadline, self._given_up, spare):
            log.warning("AE %s waited for room in the node's memory for receiving (%d MB in all, "
                        "node_receive_memory_mb) until its PDU's deadline: association aborted",
                        self.dul.assoc.requestor.ae_title, self.budget.limit >> 20)
            raise NoRoom
        if chosen is None:
            return memoryview(bytearray(size))
        self._spares.remove(chosen)
        return memoryview(chosen)[:size]

    def recycle(self, pdu: memoryview) -> None:
        """``pdu`` is no longer referred to: its buffer may hold another (kept while this
        association's spares and the node's budget have room)."""
        whole = pdu.obj
        room = sum(map(len, self._spares)) + len(whole) <= SPARE_BYTES
        if self.budget.release(self, len(whole), spare=len(whole) if room else 0):
            self._spares.append(whole)

    def close(self) -> None:
        """The association ended: whatever it held goes back to the node's budget, and an
        instance left unfinished (its PDUs) is dropped now, not when the association is."""
        self._owed = 0
        spares, self._spares = self._spares, []
        self.message = None
        held, spared = self.budget.held_by(self), sum(map(len, spares))
        del spares  # freed before the memory is handed back, and the budget told
        if held + spared >= GIVE_BACK_BYTES:
            give_memory_back()
        self.budget.release(self, spares_gone=spared)

    def _given_up(self) -> bool:
        return bool(getattr(self.dul, "_kill_thread", False))

    def take(self, pdu: memoryview) -> bool:
        """Handle one P-DATA-TF PDU (header included); False: pynetdicom must decode it (and
        the caller recycles ``pdu``)."""
        try:
            return self._take(pdu)
        except ProtocolError:
            self.message = None  # the association is aborted: what it held goes now
            self.close()
            raise
        finally:
            if self._owed:
                self.budget.charge(self, self._owed)
                self._owed = 0

    def _take(self, pdu: memoryview) -> bool:
        try:
            count = _count_items(pdu)
        except ProtocolError:
            if self.message is None or self.passing:
                return False  # pynetdicom's decoder refuses it as it always did
            raise
        if count > MAX_ITEMS_PER_PDU:  # pynetdicom's decoder would hold them all too
            raise ProtocolError(f"a P-DATA-TF PDU of more than {MAX_ITEMS_PER_PDU:,} items")
        if self.passing:
            self._follow_passing(_items(pdu))
            return False
        for start, context_id, control, data in _items(pdu):
            self._one(pdu, start, context_id, control, data)
            if self.passing:  # the rest of this PDU went to pynetdicom with the message
                break
        message = self.message
        if message is None or not message.buffers or message.buffers[-1] is not pdu:
            self.recycle(pdu)
        return True

    # -- one presentation data value ---------------------------------------------------------
    def _one(self, pdu: memoryview, start: int, context_id: int, control: int,
             data: memoryview) -> None:
        message = self.message
        if message is None:
            if not control & _COMMAND:
                raise ProtocolError("a dataset fragment arrived before any command")
            message = self.message = _Message(context_id)
            message.held.append(_rest_of(pdu, start))
            message.command_cost += _PDU_HEADER
        elif context_id != message.context_id:
            raise ProtocolError("a message's fragments came on different presentation contexts")
        elif message.request is None and start == _PDU_HEADER:
            message.held.append(bytes(pdu))  # a command over several PDUs: small ones
            message.command_cost += _PDU_HEADER
        if message.request is None:
            if not control & _COMMAND:
                raise ProtocolError("a dataset fragment arrived before its command ended")
            message.command_cost += _ITEM_HEADER + len(data)
            if message.command_cost > MAX_COMMAND_BYTES:
                self.message = None  # what it held goes now, not with the association
                raise ProtocolError(f"a command set larger than {MAX_COMMAND_BYTES:,} bytes "
                                    "(its fragments' headers counted)")
            message.command += data
            if control & _LAST:
                self._command_done(message)
            return
        if control & _COMMAND:
            raise ProtocolError("a command fragment arrived inside a dataset")
        message.size += len(data)
        if message.size > MAX_INSTANCE_BYTES:
            raise ProtocolError(f"an instance larger than {MAX_INSTANCE_BYTES:,} bytes")
        if data:  # an empty fragment would cost its objects and add nothing
            message.fragments.append(data)
            message.memory += FRAGMENT_COST
            self._owed += FRAGMENT_COST
            if not message.buffers or message.buffers[-1] is not pdu:
                message.buffers.append(pdu)
                message.memory += len(pdu.obj)
            if message.memory > MAX_INSTANCE_MEMORY:
                raise ProtocolError(f"an instance holding more than {MAX_INSTANCE_MEMORY:,} bytes "
                                    "of memory (its fragments' framing counted)")
        if control & _LAST:
            self.message = None
            self._answer(message, pdu)

    def _command_done(self, message: _Message) -> None:
        """Ours (a C-STORE request the node serves) or pynetdicom's, from here to its end."""
        try:
            command = decode(BytesIO(message.command), True, True)
            field = command.get("CommandField")
            with_dataset = command.get("CommandDataSetType", NO_DATASET) != NO_DATASET
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad input
            raise ProtocolError(f"an unreadable command set ({type(exc).__name__})") from None
        # pynetdicom's reactor thread dies (AttributeError, KeyError) on a command set it
        # cannot class, and the peer hears only the connection close: none is handed to it.
        if field not in _MESSAGE_TYPES or "CommandDataSetType" not in command:
            raise ProtocolError("a command set that is no DIMSE message (its Command Field "
                                "or Command Data Set Type missing or unknown)")
        request = (self._store_request(command, message.context_id)
                   if field == C_STORE_RQ_FIELD and with_dataset else None)
        if request is not None:
            message.request = request
            message.held.clear()
            return
        held = message.held
        self.message = None
        self.passing = True
        self._passing_needs_data = with_dataset
        for pdu in held:
            self._give(pdu)
        for pdu in held:  # they may hold the whole message already
            self._follow_passing(_items(memoryview(pdu)))

    def _store_request(self, command, context_id: int) -> C_STORE | None:
        assoc = self.dul.assoc
        if context_id not in assoc._accepted_cx or assoc._sent_release:
            return None
        message = C_STORE_RQ()
        message.command_set = command
        message.context_id = context_id
        try:
            request = message.message_to_primitive()
        except Exception:  # noqa: BLE001 - an unreadable command: pynetdicom's own answer
            return None
        if not request.is_valid_request:
            return None
        sop_class = request.AffectedSOPClassUID
        try:
            sop_class = assoc.acceptor.accepted_common_extended[sop_class][0]
        except KeyError:
            pass
        if not issubclass(uid_to_service_class(sop_class), StorageServiceClass):
            return None
        return request

    def _follow_passing(self, items: Iterator) -> None:
        """Watch pynetdicom's message go by, to know where the next one starts."""
        for _, _, control, _ in items:
            if not self.passing:
                return
            last_command = control & _COMMAND and control & _LAST
            last_data = not control & _COMMAND and control & _LAST
            if (last_command and not self._passing_needs_data) or last_data:
                self.passing = False

    def _give(self, pdu: bytes) -> None:
        """Hand a PDU to pynetdicom, as its own reader would have."""
        decoded, event = self.dul._decode_pdu(pdu)
        self.dul.event_queue.put(event)
        self.dul._recv_pdu.put(decoded)

    # -- the request, handled, and its answer -------------------------------------------------
    def _answer(self, message: _Message, current: memoryview) -> None:
        assoc = self.dul.assoc
        request = message.request
        context = assoc._accepted_cx[message.context_id]

        def head() -> bytes:
            return file_meta_bytes(request.AffectedSOPClassUID, request.AffectedSOPInstanceUID,
                                   context.transfer_syntax[0])

        fragments = message.fragments
        try:
            status, comment = self.store(assoc, head, fragments)
        except Exception as exc:  # noqa: BLE001 - as pynetdicom: the sender hears a failure
            log.error("a C-STORE request could not be handled (%s)", type(exc).__name__)
            status, comment = UNABLE_TO_PROCESS, ""
        finally:
            for fragment in fragments:
                fragment.release()
            self.budget.release(self, FRAGMENT_COST * len(fragments) - self._owed)
            self._owed = 0
            message.fragments = []
            for buffer in message.buffers:
                if buffer is not current:  # the PDU being read: ``take`` recycles it
                    self.recycle(buffer)
            if message.memory >= GIVE_BACK_BYTES:  # before the answer: a sender's next
                message.buffers = []  # instance finds the memory back (milliseconds)
                give_memory_back()
        response = C_STORE()
        response.MessageIDBeingRespondedTo = request.MessageID
        response.AffectedSOPClassUID = request.AffectedSOPClassUID
        response.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
        response.Status = status
        if comment:
            response.ErrorComment = comment
        self.send(response, message.context_id)

    def send(self, response: C_STORE, context_id: int) -> None:
        """Send the answer now, from the thread that owns the socket: encoded here when it
        fits one PDU (pynetdicom's encoder took a millisecond per answer), else by pynetdicom."""
        limit = self.dul.assoc.dimse.maximum_pdu_size
        pdu = store_response_pdu(context_id, response.MessageIDBeingRespondedTo,
                                 response.AffectedSOPClassUID, response.AffectedSOPInstanceUID,
                                 response.Status, getattr(response, "ErrorComment", None) or "")
        if not limit or len(pdu) <= limit:
            self.dul.socket.send(pdu)
            return
        dimse_message = C_STORE_RSP()
        dimse_message.primitive_to_message(response)
        dimse_message.context_id = context_id
        for pdata in dimse_message.encode_msg(context_id, limit):
            self.dul._send(P_DATA_TF(pdata))


# -- the few fixed encodings the short path makes itself (pinned byte for byte to pynetdicom's
#    and pydicom's by test_node_fastpath) --------------------------------------------------------
def _ui(uid: str) -> bytes:
    value = str(uid).encode("ascii")
    return value + b"\0" if len(value) % 2 else value


def _implicit(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", group, element, len(value)) + value


def _explicit(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
        return struct.pack("<HH2sHL", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def store_response_pdu(context_id: int, message_id: int, sop_class: str, sop_instance: str,
                       status: int, error_comment: str = "") -> bytes:
    """A C-STORE-RSP (PS3.7 9.3.1.2) as one P-DATA-TF PDU: its command set, implicit VR;
    with an Error Comment (LO, ASCII: the node's own words) when one is given."""
    comment = error_comment.encode("ascii")
    command = b"".join((
        _implicit(0x0000, 0x0002, _ui(sop_class)),
        _implicit(0x0000, 0x0100, struct.pack("<H", 0x8001)),  # C-STORE-RSP
        _implicit(0x0000, 0x0120, struct.pack("<H", message_id)),
        _implicit(0x0000, 0x0800, struct.pack("<H", NO_DATASET)),
        _implicit(0x0000, 0x0900, struct.pack("<H", status)),
        _implicit(0x0000, 0x0902, comment + b" " * (len(comment) % 2)) if comment else b"",
        _implicit(0x0000, 0x1000, _ui(sop_instance)),
    ))
    command = _implicit(0x0000, 0x0000, struct.pack("<L", len(command))) + command
    item = struct.pack(">LBB", len(command) + 2, context_id, _COMMAND | _LAST) + command
    return struct.pack(">BBL", 0x04, 0, len(item)) + item


def file_meta_bytes(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, ``DICM`` and the file meta information pynetdicom gives a received dataset
    (``create_file_meta``, written as pydicom writes it)."""
    elements = b"".join((
        _explicit(0x0002, 0x0001, b"OB", b"\x00\x01"),
        _explicit(0x0002, 0x0002, b"UI", _ui(sop_class)),
        _explicit(0x0002, 0x0003, b"UI", _ui(sop_instance)),
        _explicit(0x0002, 0x0010, b"UI", _ui(transfer_syntax)),
        _explicit(0x0002, 0x0012, b"UI", _ui(PYNETDICOM_IMPLEMENTATION_UID)),
        _explicit(0x0002, 0x0013, b"SH", _IMPLEMENTATION_VERSION),
    ))
    length = _explicit(0x0002, 0x0000, b"UL", struct.pack("<L", len(elements)))
    return b"\x00" * 128 + b"DICM" + length + elements


_IMPLEMENTATION_VERSION = PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")
if len(_IMPLEMENTATION_VERSION) % 2:
    _IMPLEMENTATION_VERSION += b" "


def _count_items(pdu: memoryview) -> int:
    """How many presentation data values a P-DATA-TF PDU holds, its framing checked (nothing
    is made of them: ``_items`` makes each in turn)."""
    count, position, end = 0, _PDU_HEADER, len(pdu)
    while position < end:
        if position + _ITEM_HEADER > end:
            raise ProtocolError("a P-DATA-TF PDU ends inside an item header")
        length = _LENGTH.unpack_from(pdu, position)[0]
        if length < 2 or position + 4 + length > end:
            raise ProtocolError("a P-DATA-TF item's length does not fit its PDU")
        position += 4 + length
        count += 1
    if not count:
        raise ProtocolError("a P-DATA-TF PDU without any item")
    return count


def _items(pdu: memoryview) -> Iterator[tuple[int, int, int, memoryview]]:
    """A P-DATA-TF PDU's presentation data values, one at a time (its framing checked by
    ``_count_items``): (the item's offset, context ID, control header, data)."""
    position, end = _PDU_HEADER, len(pdu)
    while position < end:
        length, context_id, control = _ITEM.unpack_from(pdu, position)
        stop = position + 4 + length
        yield position, context_id, control, pdu[position + _ITEM_HEADER:stop]
        position = stop


def _rest_of(pdu: memoryview, start: int) -> bytes:
    """The PDU from the item at offset ``start`` on, as a PDU of its own."""
    if start == _PDU_HEADER:
        return bytes(pdu)
    rest = pdu[start:]
    return struct.pack(">BBL", 0x04, 0, len(rest)) + rest

