"""The DICOM node: a pynetdicom storage SCP that acknowledges from a durable, encrypted spool.

- C-ECHO, and C-STORE for every storage SOP class in every common transfer syntax; the file
  is built from the dataset bytes exactly as received (never decoded here, never transcoded).
- A C-STORE is answered once the file passed a structural check (``intake.read_header``: a
  corrupt, truncated or non-DICOM file is refused at once) and sits encrypted and fdatasync'd
  in the spool (``spool.py``). A drain thread takes the spool in order, in per-site batches,
  through ``intake.ingest_many`` (de-identify, store, link); it deletes a segment once each of
  its records has an outcome. ``ingest_many`` is idempotent, so a crash between storing and
  deleting only replays files that come back DUPLICATE.
- One calling AE title per site (``Site.ae_title``), read from the database at each
  association, so a site added while the node runs is accepted at once; any other calling AE
  title is refused with A-ASSOCIATE-RJ. While the database does not answer, the titles last
  read stand (``SiteTitles``): sites send into the spool through an outage. One AE title, and
  one address, hold at most a share of the associations (``_Shares``).
- Each association runs in its own thread with its own database connection, closed when the
  association ends. Logs say who sent how much, never what.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import socket
import struct
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from pydicom.dataset import Dataset
from pynetdicom import (
    AE as ApplicationEntity,
)
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    evt,
)
from pynetdicom.acse import ACSE
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.fsm import TRANSITION_TABLE, StateMachine
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from nccid.config import get_settings

from .fastpath import NoRoom, ProtocolError, StoreFastPath, file_meta_bytes
from .outcome import IngestOutcome, IngestStatus
from .spool import Backlog, Batch, Spool, SpoolClosed, SpoolError, open_record
from .upkeep import LinkingUpkeep

log = logging.getLogger("nccid.imaging.node")

# C-STORE statuses (PS3.4 B.2.3): success, and "cannot understand" for a file we refuse.
SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700
# A C-STORE answer other than success carries an Error Comment (0000,0902) saying why: LO, at
# most 64 characters. Refusals whose reason quotes numbers read from the file (the pixel
# data's declared length, the size the image attributes give) are told in these words (the
# node's log keeps the numbers); every other reason ``_refusal`` gives is fixed wording, the
# node's limits, an element's keyword or an exception's type, never a value from the file
# (test_a_refused_instance_s_answer_says_why reads intake's reasons to hold it so).
ERROR_COMMENT_CHARS = 64
_TOLD_WITHOUT_NUMBERS = {
    "pixel data too short:": "pixel data too short for the image's size (truncated?)",
    "truncated: the pixel data declares": "truncated: the file ends inside its pixel data",
}
NOT_ENCODABLE = "the request's SOP class or instance UID cannot go in file meta"
SITE_GONE = "the calling AE title is no longer a registered site's"
NODE_STOPPING = "the node is stopping: send this instance again"
NOT_SPOOLED = "the node cannot keep it now (out of resources): send it again"
# A drain batch: at most this many files or bytes (or whatever waits when the spool is idle).
BATCH_FILES = 32
BATCH_BYTES = 32 * 1024 * 1024  # bounds what the worker holds (a batch, decrypted and copied)
# Files whose ingest failed for an internal reason (the warehouse full or unreachable, the
# database down) are retried after pauses growing from the first to the longest: they stay in
# the spool, with everything after them, until they have an outcome of their own.
FIRST_BACKOFF = 1.0
LONGEST_BACKOFF = 60.0
# A batch whose files still fail for an internal reason after this many pauses is taken one
# record at a time from the first without an outcome: a record that fails on its own while
# a later record, alone, goes in (storage and the database work) fails for a reason of its
# own (a bug in intake that raises for that file) and is quarantined; when every later
# record tried fails too, it is an outage and all wait. A failure intake itself names an
# outage (``IngestOutcome.outage``: the database, storage_url, pending_dir) is never tried
# alone nor quarantined: images waiting for their record fail while pending_dir is away
# even though the warehouse, and so later records, work.
PAUSES_BEFORE_ONE_AT_A_TIME = 3
# The later records tried: the next, then those 2, 4, 8 … records on, this many in all (to
# 1,024 records on). One fault often trips every file of a study or series, in a row.
LATER_RECORDS_TRIED = 11
# The worker process died this often with the same first record in hand: the next records
# (two batches: as many as were in flight) are taken one at a time, and a record that kills
# it this often alone is quarantined for an operator (``Spool.quarantine``).
WORKER_DEATHS = 3
# The worker yields the CPU to the receiving side: a sender waits for each acknowledgement,
# while the spool lets the worker catch up in the sender's pauses.
WORKER_NICENESS = 5
SPARES_IDLE_SECONDS = 5.0  # nothing received for this long: the spool's spares are deleted
# Longer than any AE title (16 chars): matches no caller, so "no site" refuses everyone.
_NO_SITE = "-no-site-registered-"
# After the database failed to answer, the AE titles last read stand for this long before it
# is asked again: a server that hangs costs one connection timeout, not one per association.
TITLES_RETRY_SECONDS = 10.0


class SiteTitles:
    """The sites' calling AE titles (title -> site code) as the database has them now; while it
    does not answer, as it last had them. A site's association never waits on an outage (its
    files wait in the spool), and an AE title never read from the database is still refused."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._failed_at: float | None = None

    def current(self) -> dict[str, str]:
        from django.db import DatabaseError

        from nccid.accounts.models import Site

        failed_at = self._failed_at
        if failed_at is not None and time.monotonic() - failed_at < TITLES_RETRY_SECONDS:
            return self._known
        try:
            known = {title.strip(): code for title, code in Site.objects.exclude(ae_title=None)
                     .exclude(ae_title="").values_list("ae_title", "code")}
        except DatabaseError as exc:
            self._failed_at = time.monotonic()
            log.warning("the database does not answer (%s): the %d AE title(s) last read are "
                        "accepted meanwhile, their instances wait in the spool",
                        type(exc).__name__, len(self._known))
            return self._known
        self._known, self._failed_at = known, None
        return known

    def site_code(self, ae_title: str) -> str | None:
        return self.current().get(ae_title.strip())

    def known_code(self, ae_title: str) -> str | None:
        """The site of ``ae_title`` as last read, without asking the database."""
        return self._known.get(ae_title.strip())


class NodeAE(ApplicationEntity):
    """An AE whose accepted calling AE titles are the sites' ones (``SiteTitles``)."""

    def __init__(self, *args, **kwargs) -> None:
        self.site_titles = SiteTitles()
        super().__init__(*args, **kwargs)

    @property
    def require_calling_aet(self) -> list[str]:  # type: ignore[override]
        return list(self.site_titles.current()) or [_NO_SITE]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        pass  # the list comes from the database, always


class _DjangoAssociation(Association):
    """An association thread that gives back its database connection when it ends, and that
    answers a C-STORE request it cannot read."""

    def _serve_request(self, msg, context_id: int) -> None:
        """pynetdicom ignores a request whose command it cannot read (an invalid Affected SOP
        Instance UID, say), and its sender then waits for an answer until a timeout. A C-STORE
        with a message ID gets a failure status at once instead."""
        if (isinstance(msg, C_STORE) and not msg.is_valid_request and not self._sent_release
                and msg.MessageID is not None):
            log.warning("a C-STORE request from AE %s whose command cannot be read (an "
                        "invalid UID?): refused", self.requestor.ae_title)
            _tally(self).counts["rejected"] += 1
            answer = C_STORE()
            answer.MessageIDBeingRespondedTo = msg.MessageID
            answer.Status = CANNOT_UNDERSTAND
            self.dimse.send_msg(answer, context_id)
            return
        if msg.is_valid_request and context_id not in self._accepted_cx and not self._sent_release:
            self.end_abnormally(f"a message on presentation context {context_id}, which was "
                                "not accepted")  # pynetdicom aborts the association
        super()._serve_request(msg, context_id)

    def run(self) -> None:
        from django.db import close_old_connections, connections

        close_old_connections()
        try:
            super().run()
        finally:
            self.request_arrived()  # or never will: the connection is closed
            if isinstance(self._server, NodeServer):
                self._server.shares.leave(self)
            _log_summary(self)
            _log_ending(self)
            connections.close_all()

    _nccid_ending: str | None = None  # why it ended other than by a release: the first cause

    def end_abnormally(self, why: str) -> None:
        """Note why the association is ending, and whether a message was being received then,
        for its log line (``_log_ending``); the first cause stands."""
        if self._nccid_ending is None:
            self._nccid_ending = why + _left_unfinished(self)

    _nccid_request: socket.socket | None = None  # its place among unassociated connections

    def request_arrived(self) -> None:
        """Its A-ASSOCIATE-RQ arrived whole: no longer among the node's unassociated
        connections (``_Unassociated``)."""
        request, self._nccid_request = self._nccid_request, None
        if request is not None and isinstance(self._server, NodeServer):
            self._server.unassociated.leave(request)

    def connection_closed(self) -> None:
        """Closed before its A-ASSOCIATE-RQ arrived: pynetdicom's thread would wait for one
        until the ARTIM time had passed regardless; it is told there is none (``None``, as
        when that wait ends) and ends now, its place among the unassociated given back."""
        if self._nccid_request is not None:
            self.request_arrived()
            self.dul.to_user_queue.put(None)


# The first abnormal ending an association's state machine meets (PS3.8 9.2), by event: a PDU
# out of turn (named), or another event ending it. States 1 and 13 are left out: the association
# has already ended (after a release, a refusal or a first abort). A connection closed before its
# association request is noted by the reader only if it sent anything (``_QuickDUL``): a port
# probe or a health check sends nothing, and would flood the log.
_PDUS_OUT_OF_TURN = {"Evt3": "an A-ASSOCIATE-AC", "Evt4": "an A-ASSOCIATE-RJ", "Evt10": "P-DATA",
                     "Evt12": "an A-RELEASE-RQ", "Evt13": "an A-RELEASE-RP"}
_ENDING_EVENTS = {
    "Evt6": "a second association request (A-ASSOCIATE-RQ)",
    "Evt15": "aborted by the node",
    "Evt16": "the peer aborted it (A-ABORT)",
    "Evt17": "the connection dropped (closed without a release)",
    "Evt18": "no whole association request within {artim:g} s of connecting (the ARTIM timer)",
    "Evt19": "a PDU or message the node refused",
}
_ABORTING_ACTIONS = frozenset({"AA-1", "AA-2", "AA-3", "AA-4", "AA-5", "AA-8"})


def _endings() -> dict[tuple[str, str], str]:
    endings = {}
    for (event, state), action in TRANSITION_TABLE.items():
        if action not in _ABORTING_ACTIONS or state in ("Sta1", "Sta13") or (
                event, state) == ("Evt17", "Sta2"):
            continue
        if event in _PDUS_OUT_OF_TURN:
            endings[(event, state)] = _PDUS_OUT_OF_TURN[event] + (
                " before its association request" if state == "Sta2" else " out of turn")
        else:
            endings[(event, state)] = _ENDING_EVENTS[event]
    return endings


_ENDINGS = _endings()


class _NodeStateMachine(StateMachine):
    """pynetdicom's state machine, noting the first event that ends its association abnormally
    (``_ENDINGS``: one dict look-up per event; the C-STORE short path's PDUs pass none)."""

    def do_action(self, event: str) -> None:
        why = _ENDINGS.get((event, self.current_state))
        if why is not None:
            self.dul.assoc.end_abnormally(why.format(artim=self.dul.artim_timer.timeout))
        try:
            super().do_action(event)
        except Exception as exc:
            self.dul.assoc.end_abnormally(f"the node failed on {event} in {self.current_state} "
                                          f"({type(exc).__name__})")
            raise


class _NodeACSE(ACSE):
    """pynetdicom's ACSE, keeping the reason it gave a refused association for the log, and
    refusing a site's association past its AE title's or its address's share (``_Shares``)."""

    def send_reject(self, result: int, source: int, diagnostic: int) -> None:
        self.assoc._nccid_refused = (source, diagnostic)
        super().send_reject(result, source, diagnostic)

    def _negotiate_as_acceptor(self) -> None:
        refusal = self._past_share()
        if refusal is None:
            super()._negotiate_as_acceptor()
            return
        self.requestor.ae_title = self.requestor.primitive.calling_ae_title
        self.assoc._nccid_refusal = refusal
        self.send_reject(0x02, 0x03, 0x02)  # transient; service provider; local limit exceeded
        evt.trigger(self.assoc, evt.EVT_REJECTED, {})
        self.assoc.kill()

    def _past_share(self) -> str | None:
        """Why a site's association would be one past its share, else None (it is counted
        until it ends). Any other AE title is left to pynetdicom: refused as no site's."""
        server = self.assoc._server
        title = str(self.requestor.primitive.calling_ae_title).strip()
        if not isinstance(server, NodeServer) or title not in self.assoc.ae.site_titles.current():
            return None
        return server.shares.admit(self.assoc, title, str(self.requestor.address))


class _QuickDUL(DULServiceProvider):
    """pynetdicom's network reactor sleeps 1 ms whenever a poll found nothing: on a single
    association that is one wait per instance at least. While data flows (the last PDU came
    less than ``BUSY`` seconds ago) it polls every 0.1 ms instead; idle, as pynetdicom does."""

    BUSY = 0.05

    @property
    def _run_loop_delay(self) -> float:  # type: ignore[override]
        timer = self._idle_timer
        if timer.timeout is not None and timer.timeout - timer.remaining < self.BUSY:
            return 0.0001
        return 0.001

    @_run_loop_delay.setter
    def _run_loop_delay(self, value: float) -> None:
        pass  # set by pynetdicom's __init__; the property decides

    def run(self) -> None:
        """The DUL thread; its database connection (the C-STORE short path looks the site up
        here) is closed when it ends. ``run``, not ``run_reactor``: pynetdicom binds the
        thread's target to ``run_reactor`` before the node swaps this class in."""
        from django.db import connections

        try:
            super().run()
        finally:
            fast = self.__dict__.get("_fast")
            if fast:
                fast.close()  # what its instance held goes back to the node's memory budget
            connections.close_all()

    def _fast_path(self) -> StoreFastPath | None:
        """The C-STORE short path (``fastpath.py``) when the node's own handler is bound."""
        fast = self.__dict__.get("_fast", False)
        if fast is False:
            bound = self.assoc.get_handlers(evt.EVT_C_STORE)  # (handler, arguments) if any
            fast = None
            if isinstance(bound, tuple) and bound[0] is handle_store and bound[1]:
                spool = bound[1][0]
                fast = StoreFastPath(self, lambda assoc, head, body: store_instance(
                    assoc, head, body, spool))
            self._fast = fast
        return fast

    def _read_pdu_data(self) -> None:  # type: ignore[override]
        """Read a PDU; while the C-STORE short path takes them, read on as long as more come
        within ``FOLLOW`` seconds. pynetdicom's loop sleeps whenever a PDU left it no event
        to act on: each of the 19,000 PDUs of 128 KB that dcmtk sends for 2.5 GB would wait.
        Meanwhile the network (idle) timer is the PDU's deadline's business, not the association
        thread's (``idle_timer_expired``): both aborting at once breaks pynetdicom's state machine."""
        self._reading = True
        try:
            self._read_pdus()
        finally:
            self._idle_timer.restart()  # before the association thread may look at it again
            self._reading = False

    def _read_pdus(self) -> None:
        if not self._read_one_pdu():
            return
        # The association thread polls every millisecond for messages it will not get while
        # the short path has them: it waits (pynetdicom's own pause) until this burst ends.
        checkpoint = self.assoc._reactor_checkpoint
        checkpoint.clear()
        try:
            while (not self._kill_thread and self.to_provider_queue.empty()
                   and self.socket.socket is not None
                   and select.select([self.socket.socket], [], [], self.FOLLOW)[0]
                   and self._read_one_pdu()):
                pass
        finally:
            checkpoint.set()

    FOLLOW = 0.002
    _reading = False
    _abandoned = False  # aborted mid-PDU: the bytes that follow are the rest of it, not PDUs

    def idle_timer_expired(self) -> bool:
        """pynetdicom's network timeout, while no PDU is being read (each has its deadline)."""
        expired = not self._reading and super().idle_timer_expired()
        if expired:  # the association thread aborts it
            self.assoc.end_abnormally(f"nothing received for {self.network_timeout:g} s (the "
                                      "network timeout)")
        return expired

    def _read_one_pdu(self) -> bool:
        """pynetdicom's PDU reading, with the declared length checked before anything is
        allocated for it (a peer could otherwise declare 4 GB in six bytes) and the PDU read
        straight into one buffer (pynetdicom copies it once more), whole within its deadline
        (``_pdu_deadline``). True when the short path took the PDU; otherwise it is on
        pynetdicom's queue (or an event ends the association)."""
        sock = self.socket
        awaiting_request = self.state_machine.current_state in _ARTIM_STATES
        if self._abandoned:
            return self._discard(awaiting_request)
        deadline = self._pdu_deadline(awaiting_request)
        header = bytearray(6)
        try:
            started = sock.recv_exactly(memoryview(header), deadline)
        except TimeoutError:
            return self._too_slow(awaiting_request)
        except OSError:
            started = False
        if not started:
            return self._peer_closed(awaiting_request, sent_any=sock.read_before_close > 0)
        pdu_type, _, length = struct.unpack(">BBL", header)
        limit = P_DATA_LIMIT if pdu_type == 0x04 and self.assoc.is_established else CONTROL_PDU_LIMIT
        if pdu_type not in _PDU_TYPES or length > limit:
            log.warning("refused a PDU of type 0x%02X declaring %d bytes (limit %d): association "
                        "aborted", pdu_type, length, limit)
            self.assoc.end_abnormally(f"a PDU of type 0x{pdu_type:02X} declaring {length:,} "
                                      f"bytes (limit {limit:,})")
            self.event_queue.put("Evt19")  # invalid PDU: A-ABORT
            return False
        fast = None
        if pdu_type == 0x04 and self.state_machine.current_state == "Sta6":
            fast = self._fast_path()
        try:
            bytestream = (fast.buffer(6 + length, deadline) if fast is not None
                          else bytearray(6 + length))
        except NoRoom:  # logged by the short path
            self.assoc.end_abnormally("no room in the node's memory for receiving within the "
                                      "PDU's deadline")
            self._abandoned = True
            self.event_queue.put("Evt19")
            return False
        bytestream[:6] = header
        try:
            complete = sock.recv_exactly(bytestream[6:] if fast is not None
                                         else memoryview(bytestream)[6:], deadline)
        except TimeoutError:
            return self._too_slow(awaiting_request)
        except OSError:
            complete = False
        if not complete:
            return self._peer_closed(awaiting_request, sent_any=True)
        if fast is not None:
            try:
                if fast.take(bytestream):
                    return True
            except ProtocolError as exc:
                log.warning("AE %s broke the P-DATA framing (%s): association aborted",
                            self.assoc.requestor.ae_title, exc)
                self.assoc.end_abnormally(f"the P-DATA framing broken ({exc})")
                self.event_queue.put("Evt19")
                return False
            pdu_bytes = bytes(bytestream)
            fast.recycle(bytestream)
            bytestream = pdu_bytes
        try:
            pdu, event = self._decode_pdu(bytestream)
        except Exception:  # noqa: BLE001 - as pynetdicom: an undecodable PDU aborts
            log.warning("refused a PDU of type 0x%02X that could not be decoded: association "
                        "aborted", pdu_type)
            self.assoc.end_abnormally(f"a PDU of type 0x{pdu_type:02X} that could not be decoded")
            self.event_queue.put("Evt19")
            return False
        if awaiting_request and pdu_type == 0x01:
            self.assoc.request_arrived()
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)
        return False

    def _pdu_deadline(self, awaiting_request: bool) -> float | None:
        """When the PDU starting now must have arrived whole (``time.monotonic``). Before
        association, the A-ASSOCIATE-RQ within the ARTIM timer started with the connection;
        after, each PDU within the network timeout of its first byte. The whole PDU, not each
        read: a peer sending a byte now and then would otherwise hold its slot for ever."""
        if awaiting_request:
            return time.monotonic() + max(self.artim_timer.remaining, 0.0)
        timeout = self.network_timeout
        return None if timeout is None else time.monotonic() + timeout

    def _peer_closed(self, awaiting_request: bool, sent_any: bool) -> bool:
        """The peer closed the connection. Before its association request that is logged only
        if it sent anything: a port probe or a health check sends nothing."""
        if sent_any and self.state_machine.current_state in _BEFORE_REQUEST:
            self.assoc.end_abnormally("closed before its association request arrived whole")
        self.event_queue.put("Evt17")  # transport closed
        if awaiting_request:
            self.assoc.connection_closed()
        return False

    def _discard(self, awaiting_request: bool) -> bool:
        """After an abort mid-PDU, what the peer still sends is dropped unread (parsed, the rest
        of that PDU read as PDUs of nonsense types and lengths, each logged as refused) until
        it closes the connection or the ARTIM timer does."""
        try:
            data = self.socket.socket.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            return self._peer_closed(awaiting_request, sent_any=False)
        return False

    def _too_slow(self, awaiting_request: bool) -> bool:
        """The PDU did not arrive whole in time: before association the ARTIM timer's expiry
        (the connection is closed), after it an A-ABORT."""
        if not awaiting_request:
            self.assoc.end_abnormally(f"a PDU not whole within {self.network_timeout:g} s of its "
                                      "first byte")
            self._abandoned = True
        elif self.state_machine.current_state in _BEFORE_REQUEST:  # noted here: the event may
            # never be acted on (the association thread's own wait ends at the same time)
            self.assoc.end_abnormally(_ENDING_EVENTS["Evt18"].format(
                artim=self.artim_timer.timeout))
        self.event_queue.put("Evt18" if awaiting_request else "Evt19")
        return False


# The states in which the ARTIM timer bounds a read: a connection awaiting its A-ASSOCIATE-RQ
# (Sta1 too: the DUL may read before it has acted on the connection's own event), and one
# awaiting its close.
_ARTIM_STATES = frozenset({"Sta1", "Sta2", "Sta13"})
_BEFORE_REQUEST = frozenset({"Sta1", "Sta2"})

# PDU lengths the node accepts: P-DATA up to the maximum it negotiates, anything else (an
# association request with its presentation contexts and user identity) up to 1 MB.
MAXIMUM_PDU = 16 * 1024 * 1024
P_DATA_LIMIT = MAXIMUM_PDU
CONTROL_PDU_LIMIT = 1024 * 1024
_PDU_TYPES = frozenset(range(0x01, 0x08))


class _NoDelayHandler(RequestHandler):
    def handle(self) -> None:
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.request.settimeout(None)  # as accept() leaves it: reads keep their own deadlines
        super().handle()

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        assoc.__class__ = _DjangoAssociation
        assoc.acse.__class__ = _NodeACSE
        assoc._nccid_request = self.request
        assoc.dul.__class__ = _QuickDUL
        assoc.dul.state_machine.__class__ = _NodeStateMachine
        assoc.dul.socket.__class__ = _BulkSocket
        return assoc


class _BulkSocket(AssociationSocket):
    """pynetdicom reads a PDU 4 KB per ``recv`` and appends each piece to a bytearray: for an
    8 MB image that is 2,000 system calls and copies. Here the PDU (its length checked first,
    see ``_QuickDUL._read_pdu_data``) is read straight into one buffer of its size with
    ``recv_into``, as much per call as the kernel has.

    The accepted socket blocks (no timeout): each read takes what the kernel has without
    waiting, and only when it has nothing does ``select`` wait, up to the PDU's deadline. The
    deadline costs nothing while data flows, and sends are left as pynetdicom has them."""

    read_before_close = 0  # bytes of the PDU being read when the peer closed the connection

    def recv_exactly(self, view: memoryview, deadline: float | None = None) -> bool:
        """Fill ``view`` from the socket; False when the peer closed the connection first,
        ``TimeoutError`` when ``deadline`` (``time.monotonic``) passed first."""
        sock, read, size = self.socket, 0, len(view)
        while read < size:
            try:
                got = sock.recv_into(view[read:], size - read, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if not _readable(sock, deadline):
                    raise TimeoutError("the PDU did not arrive whole in time") from None
                continue
            if not got:
                self.read_before_close = read
                return False
            read += got
        return True

    def close(self) -> None:
        super().close()
        self.assoc.connection_closed()


def _readable(sock: socket.socket, deadline: float | None) -> bool:
    """Wait until ``sock`` has data (or was closed); False if ``deadline`` passed first."""
    wait = None if deadline is None else deadline - time.monotonic()
    return (wait is None or wait > 0) and bool(select.select([sock], [], [], wait)[0])


@dataclass
class _Tally:
    started: float = field(default_factory=time.perf_counter)
    site: str = "-"
    counts: Counter = field(default_factory=Counter)
    bytes: int = 0


_tallies: dict[int, _Tally] = {}
_tallies_lock = threading.Lock()


def _tally(assoc) -> _Tally:
    with _tallies_lock:
        return _tallies.setdefault(id(assoc), _Tally())


def _log_summary(assoc) -> None:
    with _tallies_lock:
        tally = _tallies.pop(id(assoc), None)
    if tally is None or not tally.counts:
        return
    seconds = time.perf_counter() - tally.started
    parts = ", ".join(f"{n} {status}" for status, n in sorted(tally.counts.items()))
    log.info("association from site %s: %s; %.1f MB in %.1f s", tally.site, parts,
             tally.bytes / 1e6, seconds)


def _log_ending(assoc) -> None:
    """One line for an association that ended other than by a release or a refusal: who, why
    (its first cause), and whether an instance was being received. None for a connection that
    closed having sent nothing."""
    why = assoc._nccid_ending
    if why is None and assoc.is_aborted:
        why = "aborted (no cause noted)"
    if why is not None:
        log.warning("%s ended abnormally: %s", _peer_for_log(assoc), why)


def _peer_for_log(assoc) -> str:
    """The peer as its log line names it: a registered site's AE title as sent, any other by
    ``ae_title_for_log``; only the address before its association request arrived."""
    requestor = assoc.requestor
    title = str(requestor.ae_title).strip()
    if not title:
        return f"a connection from {requestor.address}"
    code = assoc.ae.site_titles.known_code(title)
    shown = f"{title} (site {code})" if code else ae_title_for_log(title)
    return f"the association from AE {shown} at {requestor.address}"


def _left_unfinished(assoc) -> str:
    """What an association ending now leaves half received, for its log line."""
    fast = assoc.dul.__dict__.get("_fast")
    message = getattr(fast, "message", None)
    if message is not None and message.request is not None:
        return "; an instance was being received: not stored, the sender should send it again"
    if message is not None or getattr(fast, "passing", False) or assoc.dimse.message is not None:
        return "; a message was being received"
    return ""


def handle_store(event, spool: Spool) -> int | Dataset:
    """C-STORE through pynetdicom, should one reach it: the node binds this handler, and the
    short path (``fastpath.py``) finds the spool by it and calls ``store_instance`` itself."""
    request = event.request
    body = request.DataSet.getbuffer()
    try:
        status, comment = store_instance(event.assoc, lambda: file_meta_bytes(
            request.AffectedSOPClassUID, request.AffectedSOPInstanceUID,
            event.context.transfer_syntax), body, spool)
    finally:
        body.release()
    if not comment:
        return status
    answer = Dataset()  # pynetdicom sends a status's Error Comment given so
    answer.Status, answer.ErrorComment = status, comment
    return answer


def store_instance(assoc, make_head: Callable[[], bytes], body, spool: Spool) -> tuple[int, str]:
    """C-STORE: a structurally sound file is spooled (encrypted, durable), then acknowledged.
    The file is ``make_head()`` (preamble, ``DICM``, file meta), then ``body``: the dataset as
    received (one buffer, or the list of its fragments). Returns the status and, for a file
    not taken, the Error Comment that tells the sender why ("" for none)."""
    tally = _tally(assoc)
    code = getattr(assoc, "_nccid_site_code", None)
    if code is None:
        code = assoc.ae.site_titles.site_code(assoc.requestor.ae_title)
        if code is None:  # the site was removed during the association
            return OUT_OF_RESOURCES, SITE_GONE
        assoc._nccid_site_code = code
        tally.site = code
    try:
        # The file as pynetdicom's encoded_dataset() makes it, without its two copies of the
        # dataset: the file meta, then the bytes as received.
        head = make_head()
    except Exception as exc:  # noqa: BLE001
        log.warning("site %s sent a dataset that could not be encoded (%s)", code,
                    type(exc).__name__)
        tally.counts["rejected"] += 1
        return CANNOT_UNDERSTAND, NOT_ENCODABLE
    parts = body if isinstance(body, list) else [body]
    size = len(head) + sum(map(len, parts))
    try:
        # Checked while the disk writes the encrypted body; refused, it never becomes a record.
        refused = spool.append(code, "node", [head, *parts],
                               check=partial(_refusal, head, parts))
    except SpoolClosed:  # (its association outlived the stop's wait: nothing is wrong)
        log.warning("site %s: an instance arrived as the node stopped: not kept, the sender "
                    "should send it again", code)
        tally.counts["not spooled"] += 1
        return OUT_OF_RESOURCES, NODE_STOPPING
    except SpoolError as exc:
        log.error("site %s: an instance could not be spooled: %s", code, exc)
        tally.counts["not spooled"] += 1
        return OUT_OF_RESOURCES, NOT_SPOOLED
    if refused is not None:
        log.warning("site %s: an instance was rejected: %s", code, refused)
        tally.counts["rejected"] += 1
        return CANNOT_UNDERSTAND, error_comment(refused)
    tally.counts["received"] += 1
    tally.bytes += size
    return SUCCESS, ""


def _refusal(head: bytes, parts: list) -> str | None:
    """Why the received file is refused (``intake.read_received``'s structural check), or None."""
    from .intake import Rejected, read_received

    try:
        read_received(head, parts)
    except Rejected as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a message may quote a value: the type only
        return f"the dataset could not be read ({type(exc).__name__})"
    return None


def error_comment(reason: str) -> str:
    """What the sender is told of a refusal (``reason``, as the node's log says it): at most
    ERROR_COMMENT_CHARS, cut before an explanation (a parenthesis, what follows a colon) if
    that keeps half, else after a word, marked "..."; a reason quoting numbers from the file,
    in fixed words."""
    for start, told in _TOLD_WITHOUT_NUMBERS.items():
        if reason.startswith(start):
            return told
    limit = ERROR_COMMENT_CHARS
    if len(reason) <= limit:
        return reason
    cut = max(reason.rfind(mark, 0, limit + 2) for mark in (" (", ": ", "; "))
    if cut >= limit // 2:
        return reason[:cut]
    space = reason.rfind(" ", 0, limit - 2)
    return (reason[:space].rstrip(",;:") if space > 0 else reason[:limit - 3]) + "..."


class Drain:
    """The thread that takes the spool, in order and in per-site batches, to ``ingest_many``."""

    def __init__(self, spool: Spool, worker: WorkerProcess | None = None) -> None:
        self.spool = spool
        self.worker = worker  # de-identification in a child process, or here if None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nccid-node-drain", daemon=True)
        self._tallies: dict[str, Counter] = defaultdict(Counter)
        # Batches sent to the worker whose outcomes are not taken yet, oldest first (at most
        # two: it prepares the second while the first is made durable).
        self._in_flight: deque[Batch] = deque()
        # Worker deaths with the same first unreleased record (position), and how many records
        # are still to be taken one at a time after such deaths.
        self._deaths: tuple[tuple[int, int], int] = ((0, 0), 0)
        self._one_at_a_time = 0
        self._backoff = 0.0  # the last pause for files failing for an internal reason

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 300.0) -> bool:
        """Finish the batch in hand, leave the rest in the spool; True once stopped."""
        self._stop.set()
        self.spool.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("the spool drain did not stop within %.0f s", timeout)
                return False
        if self.worker is not None:
            self.worker.close()
        return True

    def _ingest_many(self, items: list[bytes], site, source: str) -> list[IngestOutcome]:
        if self.worker is not None:
            return self.worker.ingest(site.code, source, items)
        from .intake import ingest_many

        return ingest_many([bytes(item) for item in items], site, source)

    def _run(self) -> None:
        from django.db import connections

        delay = 1.0
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                    delay = 1.0
                except Exception as exc:  # noqa: BLE001 - never die: the spool keeps the files
                    log.error("the spool drain failed (%s at %s); retrying in %.0f s",
                              type(exc).__name__, _where(exc), delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 60.0)
            self._take_in_flight()
        finally:
            connections.close_all()

    def _step(self) -> None:
        try:
            try:
                self._take_next()
            except _StillFailing as failing:
                self._in_flight.clear()  # its replies are taken: read again from the first
                self._still_failing(failing)
        except WorkerCannotStart as exc:  # (before any record: none of them is at fault)
            self._in_flight.clear()
            self._wait_for_worker(exc)
        except WorkerGone:
            self._in_flight.clear()  # what it had stays in the spool: read again
            self._worker_died()
            raise

    def _take_next(self) -> None:
        seen = self.spool.appends
        batch = self.spool.read_batch(1 if self._one_at_a_time else BATCH_FILES, BATCH_BYTES,
                                      sealed=self.worker is not None,
                                      after=self._in_flight[-1] if self._in_flight else None)
        if self._sent_ahead(batch):
            return
        if self._in_flight:  # nothing to send ahead: the batch in flight is answered first
            self._take_reply()
            return
        if batch.records or batch.skipped or batch.finished:
            if self._process(batch):
                self.spool.release(batch)
                self._one_at_a_time = max(0, self._one_at_a_time - len(batch.records))
            return
        self._log_tallies()
        if self.spool.has_spares:  # old records, encrypted: gone once the node is idle
            if not self.spool.wait_for_more(seen, timeout=SPARES_IDLE_SECONDS):
                self.spool.discard_spares()
            return
        self.spool.wait_for_more(seen, timeout=60.0)

    def _worker_died(self) -> None:
        """Count the worker's death against the first record without an outcome. After
        ``WORKER_DEATHS`` the records go one at a time (one in flight: a death is that
        record's); a record that killed it that often alone is quarantined, and the rest
        drains: one file the worker cannot survive must not hold up every site's. A death
        while the database does not answer is the outage's, not the record's: not counted."""
        failure = database_failure()
        if failure is not None:
            log.warning("the de-identification process failed while the database does not "
                        "answer (%s): not counted against its records", failure)
            return
        position = self.spool.position
        where, deaths = self._deaths
        deaths = deaths + 1 if where == position else 1
        self._deaths = (position, deaths)
        if deaths < WORKER_DEATHS:
            return
        self._deaths = (position, 0)
        if not self._one_at_a_time:
            log.error("the de-identification process ended %d times on the same batch: its "
                      "records are taken one at a time", deaths)
            self._one_at_a_time = 2 * BATCH_FILES  # the batches that were in flight
            return
        self._quarantine(self.spool.read_batch(1, BATCH_BYTES, sealed=True),
                         f"ended the de-identification process {deaths} times on its own",
                         QUARANTINED_PROBLEM)

    def _wait_for_worker(self, exc: WorkerCannotStart) -> None:
        """The worker process could not start (its settings, a database it cannot open, a
        broken install): every record stays in the spool, counted against none, and the node
        tries again after a pause as for an outage."""
        delay = self._next_backoff()
        log.error("%s: every received instance is kept in the spool; retrying in %.0f s", exc,
                  delay)
        self._stop.wait(delay)

    def _still_failing(self, failing: _StillFailing) -> None:
        """Files failed for an internal reason again and again: a file intake cannot take, or
        an outage? A batch is taken again one record at a time. A record failing alone is
        quarantined if a later record, alone, goes in (``_later_one_going_in``) and it fails
        once more; if every later one tried fails too, or none follows yet, all wait, with
        pauses growing as before. Files that failed for an outage intake named (``outage``:
        the database, the store, the folder of waiting images) are not at fault: they wait,
        never tried alone nor quarantined."""
        if failing.outage:
            self._wait_out(failing)
            return
        if not self._one_at_a_time:
            log.warning("site %s: instances failed for an internal reason (%s) %d times: "
                        "the records are taken one at a time, to tell a file that fails "
                        "from an outage", failing.code, failing.reason,
                        PAUSES_BEFORE_ONE_AT_A_TIME + 1)
            self._one_at_a_time = 2 * BATCH_FILES  # the batches that were in flight
            return
        sealed = self.worker is not None
        head = self.spool.read_batch(1, BATCH_BYTES, sealed=sealed)
        later = self.spool.read_batch(1, BATCH_BYTES, sealed=sealed, after=head)
        if not head.records or not later.records:
            self._pause_after(failing, "no later instance yet to tell it from an outage")
            return
        went_in = self._later_one_going_in(later)
        if went_in is None:
            if not self._stop.is_set():
                self._pause_after(failing, "later instances failed too: is the warehouse full "
                                           "or unreachable?")
            return
        try:  # storage works: the first once more, then it is the file's own failure
            if not self._process(head):
                return
            self.spool.release(head)
        except _StillFailing as again:
            if again.outage:  # (began meanwhile: the file is not at fault)
                self._wait_out(again)
                return
            self._quarantine(head, f"failed for an internal reason ({again.reason}) on its "
                                   "own while a later one went in", QUARANTINED_INTERNAL_PROBLEM)
        if went_in is later:  # (one further on is taken again in its turn: a duplicate)
            self.spool.release(later)
        self._one_at_a_time = max(0, self._one_at_a_time - 2)

    def _later_one_going_in(self, later: Batch) -> Batch | None:
        """The first record that goes in, alone, of the record after a failing one (``later``,
        1 on) and those 2, 4, 8 … 1,024 on (``LATER_RECORDS_TRIED`` in all): proof that
        storage works. None if each one tried failed too, or the drain was stopped."""
        sealed = self.worker is not None
        probe, reached = later, 1
        for _ in range(LATER_RECORDS_TRIED):
            try:
                return probe if self._process(probe) else None
            except _StillFailing:
                pass
            between = self.spool.skip(reached - 1, after=probe)  # frames only, any size
            probe = self.spool.read_batch(1, BATCH_BYTES, sealed=sealed, after=between)
            if not probe.records:
                return None
            reached *= 2
        return None

    def _pause_after(self, failing: _StillFailing, why: str) -> None:
        delay = self._next_backoff()
        log.warning("site %s: an instance could not be stored for an internal reason (%s; "
                    "%s): kept in the spool with everything after it; retrying in %.0f s",
                    failing.code, failing.reason, why, delay)
        self._stop.wait(delay)

    def _wait_out(self, failing: _StillFailing) -> None:
        """Pause for an outage intake named, saying which setting to check."""
        delay = self._next_backoff()
        _log_outage(failing.code, failing.count, failing.outage, delay)
        self._stop.wait(delay)

    def _next_backoff(self) -> float:
        """The next pause for files failing for an internal reason: doubling, to a minute."""
        self._backoff = min(max(self._backoff * 2, FIRST_BACKOFF), LONGEST_BACKOFF)
        return self._backoff

    def _quarantine(self, batch: Batch, why: str, problem: str) -> None:
        """Copy the records of ``batch`` (one) to the quarantine folder for an operator,
        count them on their site's receipt with ``problem``, and release them."""
        for record in batch.records:
            code, place = self.spool.quarantine(record)
            log.error("site %s: a received instance %s: moved to %s for an operator (nccid "
                      "images quarantine)", code or "?", why, place)
            self._tallies[code or "?"]["quarantined"] += 1
            _count_quarantined(code, problem)
        self.spool.release(batch)

    def _sent_ahead(self, batch: Batch) -> bool:
        """Send a batch of sealed records to the worker without waiting for it, then take the
        reply to the batch before it, if any; False if ``batch`` is not one for that."""
        if (self.worker is None or self._one_at_a_time or not batch.records or batch.skipped
                or not all(record.sealed for record in batch.records)
                or not self._database_ready()):
            return False
        try:
            self.worker.send_records(self.spool.directory, batch.records)
        except WorkerGone:
            self._in_flight.clear()  # they stay in the spool: read again after the last release
            raise
        self._in_flight.append(batch)
        if len(self._in_flight) > 1:
            self._take_reply()
        return True

    def _take_reply(self) -> None:
        """Outcomes for the oldest batch in flight, then its release. A batch with failures to
        retry waits for the worker's other reply first: retries are asked one at a time."""
        try:
            answered = [(self._in_flight.popleft(), self.worker.next_reply())]
            if self._in_flight and any(o is not None and _internal(o)
                                       for _, o in answered[0][1]):
                answered.append((self._in_flight.popleft(), self.worker.next_reply()))
        except WorkerGone:
            self._in_flight.clear()
            raise
        for batch, replies in answered:
            if not self._ingest_sealed(batch.records, replies):
                self._in_flight.clear()  # stopped: this batch and the next stay in the spool
                return
            self.spool.release(batch)

    def _take_in_flight(self) -> None:
        """On stopping: the replies to batches in flight taken (the worker finishes them)."""
        while self._in_flight:
            try:
                self._take_reply()
            except Exception as exc:  # noqa: BLE001 - they stay in the spool for the next start
                log.error("the spool drain stopped with batches unanswered (%s)",
                          type(exc).__name__)
                self._in_flight.clear()

    def _process(self, batch: Batch) -> bool:
        """Give every record of ``batch`` an outcome; False if stopped first (it stays)."""
        groups: dict[tuple[str, str], list] = defaultdict(list)
        for record in batch.records:
            if not record.sealed:
                groups[(record.site_code, record.source)].append(record.data)
        for (code, source), items in groups.items():
            outcomes = self._ingest(code, source, items)
            if outcomes is None:
                return False
            self._count(code, outcomes)
        sealed = [record for record in batch.records if record.sealed]
        return not sealed or self._ingest_sealed(sealed)

    def _count(self, code: str, outcomes: list[IngestOutcome]) -> None:
        for outcome in outcomes:
            self._tallies[code][outcome.status.value] += 1
            if outcome.status is IngestStatus.REJECTED:
                log.warning("site %s: an instance was rejected: %s", code, outcome.reason)

    def _ingest(self, code: str, source: str, items: list) -> list[IngestOutcome] | None:
        from nccid.accounts.models import Site

        if not self._database_ready():
            return None
        site = Site.objects.filter(code=code).first()
        if site is None:
            return [IngestOutcome(IngestStatus.REJECTED, "the site is no longer registered")
                    ] * len(items)
        return self._retrying(lambda indices: _every_outcome(
            self._ingest_many([items[i] for i in indices], site, source), len(indices), code),
            len(items), code)

    def _ingest_sealed(self, records: list, replies: list | None = None) -> bool:
        """Records the worker process reads from the spool itself; False if stopped first.
        ``replies``: the worker's first answer, if already taken (then only retries are asked)."""
        if replies is None and not self._database_ready():
            return False
        sites: list[str] = [code for code, _ in replies] if replies else [""] * len(records)

        def attempt(indices: list[int]) -> list[IngestOutcome]:
            outcomes = []
            for i, (code, outcome) in zip(indices, self.worker.ingest_records(
                    self.spool.directory, [records[i] for i in indices]), strict=True):
                sites[i] = code or sites[i]
                outcomes.append(outcome)
            return outcomes

        first = [outcome for _, outcome in replies] if replies is not None else None
        label = ", ".join(sorted({code for code in sites if code})) or "(spool)"
        outcomes = self._retrying(attempt, len(records), label, first)
        if outcomes is None:
            return False
        for record, code, outcome in zip(records, sites, outcomes, strict=True):
            if outcome is None:
                self.spool.record_corrupt(record)
            else:
                self._count(code, [outcome])
        return True

    def _retrying(self, ingest, count: int, code: str, first: list | None = None) -> list | None:
        """``ingest(indices)`` for all (unless ``first`` has their outcomes), then again, after
        growing pauses, for those that failed for an internal reason: such a file was
        acknowledged and is never given up (ingest is idempotent: a retry stores each file
        once). The batch, and so everything after it, waits meanwhile. Still failing after
        ``PAUSES_BEFORE_ONE_AT_A_TIME`` pauses (a record taken alone: at once), it raises
        ``_StillFailing`` for ``_still_failing`` to tell a file from an outage (or wait out the
        outage intake named). None if stopped."""
        outcomes = first if first is not None else ingest(list(range(count)))
        pauses = 0
        while failed := [i for i, o in enumerate(outcomes) if o is not None and _internal(o)]:
            reason = outcomes[failed[0]].reason
            outage = next((outcomes[i].outage for i in failed if outcomes[i].outage), "")
            if self._one_at_a_time or pauses == PAUSES_BEFORE_ONE_AT_A_TIME:
                raise _StillFailing(code, reason, outage, len(failed))
            delay = self._next_backoff()
            if outage:
                _log_outage(code, len(failed), outage, delay)
            else:
                log.warning("site %s: %d instance(s) could not be stored for an internal "
                            "reason (%s; is the warehouse full or unreachable?): kept in the "
                            "spool with everything after them; retrying in %.0f s", code,
                            len(failed), reason, delay)
            if self._stop.wait(delay) or not self._database_ready():
                return None
            for index, outcome in zip(failed, ingest(failed), strict=True):
                outcomes[index] = outcome
            pauses += 1
        self._backoff = 0.0
        return outcomes

    def _database_ready(self) -> bool:
        """Wait (backing off) until both databases answer; False if stopped meanwhile."""
        delay = 1.0
        while not self._stop.is_set():
            failure = database_failure()
            if failure is None:
                return True
            log.error("the spool drain cannot reach the database (%s); retrying in %.0f s",
                      failure, delay)
            self._stop.wait(delay)
            delay = min(delay * 2, 60.0)
        return False

    def _log_tallies(self) -> None:
        for code, counts in sorted(self._tallies.items()):
            parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            log.info("spool drained for site %s: %s", code, parts)
        self._tallies.clear()


def database_failure() -> str | None:
    """None if both databases answer a query now on this thread's connections, else the
    failure's type name. A connection the server ended (a restart) is replaced first
    (``close_old_connections`` with the settings' health checks): a kept one is not proof."""
    from django.db import DatabaseError, close_old_connections, connections

    close_old_connections()
    try:
        for alias in ("default", "vault"):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
    except DatabaseError as exc:
        connections.close_all()
        return type(exc).__name__
    return None


def _where(exc: Exception) -> str:
    """File and line an exception came from (its message may quote a value: never logged)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"


# The receipt quarantined files count into: their study is not read (reading the file is
# what the worker could not survive), so one receipt per site gathers them.
QUARANTINED_STUDY = "(quarantined by the node)"
QUARANTINED_PROBLEM = ("the de-identification process ended on this file: kept for an "
                       "operator (nccid images quarantine)")
QUARANTINED_INTERNAL_PROBLEM = ("could not be processed (internal error): kept for an "
                                "operator (nccid images quarantine)")


class _StillFailing(Exception):
    """Files still fail for an internal reason after the pauses allowed (``Drain._retrying``);
    ``outage``: the line naming the setting to check when intake found an outage the cause."""

    def __init__(self, code: str, reason: str, outage: str = "", count: int = 1) -> None:
        super().__init__(reason)
        self.code, self.reason, self.outage, self.count = code, reason, outage, count


def _log_outage(code: str, count: int, outage: str, delay: float) -> None:
    log.warning("site %s: %d instance(s) kept in the spool with everything after them, "
                "retrying in %.0f s: %s", code, count, delay, outage)


def _count_quarantined(code: str, problem: str) -> None:
    """Count a quarantined file into its site's receipts as refused (no bytes, as a refusal
    counts), for the site to see."""
    from nccid.accounts.models import Site

    from .intake import UNREADABLE_STUDY, record_receipt

    try:
        site = Site.objects.filter(code=code).first() if code else None
        if site is not None:
            record_receipt(site, UNREADABLE_STUDY._replace(study_uid=QUARANTINED_STUDY), "",
                           "node", 0, rejected=1, problem=problem)
    except Exception as exc:  # noqa: BLE001 - the file is kept; only its count is missing
        log.error("site %s: a quarantined instance could not be counted on a receipt (%s)",
                  code, type(exc).__name__)


def _internal(outcome: IngestOutcome) -> bool:
    return outcome.status is IngestStatus.REJECTED and outcome.reason.startswith("internal error")


NO_OUTCOME = IngestOutcome(IngestStatus.REJECTED, "internal error (no outcome)")


def _every_outcome(outcomes: list, count: int, code: str) -> list[IngestOutcome]:
    """``count`` outcomes: intake's, or an internal error (retried, the file kept in the
    spool) for a file it gave none (a bug), and for all if it gave another number of them
    (which answers which file is unknown). A missing outcome must never stop the drain nor
    release a file."""
    if len(outcomes) == count and all(isinstance(o, IngestOutcome) for o in outcomes):
        return outcomes
    missing = (sum(not isinstance(o, IngestOutcome) for o in outcomes)
               if len(outcomes) == count else count)
    log.error("site %s: intake gave %d of %d instance(s) no outcome: kept in the spool and "
              "retried as an internal error", code, missing, count)
    if len(outcomes) != count:
        return [NO_OUTCOME] * count
    return [o if isinstance(o, IngestOutcome) else NO_OUTCOME for o in outcomes]


def handle_echo(event) -> int:
    return SUCCESS


# A-ASSOCIATE-RJ (source, reason) as pynetdicom's acceptor sends them (PS3.8 9.3.4).
_REFUSALS = {
    (0x01, 0x01): "no reason given",
    (0x01, 0x02): "application context not supported",
    (0x01, 0x03): "not a registered site's AE title",
    (0x01, 0x07): "the node called by another AE title",
    (0x02, 0x01): "its user identity not accepted",
    (0x02, 0x02): "protocol version not supported",
    (0x03, 0x01): "temporary congestion",
    (0x03, 0x02): "association limit ({limit}) reached",
}


def handle_rejected(event) -> None:
    """Say who was turned away, and why (the reason the peer was sent): a site whose AE title
    is not (or no longer) registered otherwise fails without a trace on this side, and a busy
    node's refusals are not mistaken for one."""
    assoc = event.assoc
    requestor = assoc.requestor
    source_reason = getattr(assoc, "_nccid_refused", (0x01, 0x03))
    why = getattr(assoc, "_nccid_refusal", None) or _REFUSALS.get(
        source_reason, "source {0}, reason {1}").format(
        *source_reason, limit=getattr(getattr(assoc, "ae", None), "maximum_associations", "?"))
    log.warning("refused an association from AE %s at %s (%s)",
                ae_title_for_log(requestor.ae_title), requestor.address, why)


def ae_title_for_log(title: str) -> str:
    """A calling AE title as the log may show it: as sent when it holds no digit, else only
    its shape (letters A, digits 9) and length. Anyone can call the node, with any title: an
    NHS or hospital number typed as one (9990001006, HOSPZQX991) must not reach the log."""
    title = str(title).strip()
    if not any(char.isdigit() for char in title):
        return title
    shape = "".join("9" if char.isdigit() else "A" if char.isalpha() else char for char in title)
    return f"shaped {shape} ({len(title)} characters)"


def _take_the_senders_transfer_syntax() -> None:
    """Of the transfer syntaxes a presentation context proposes, accept the first the node
    supports in the *sender's* order, as dcmtk's storescp does. pynetdicom takes the first in
    its own list (Implicit VR Little Endian leads it), so a sender proposing [JPEG Lossless,
    Explicit VR, Implicit VR] for a compressed file, as dcmsend does, was made to decompress
    it: the issue asks that compressed images be stored as received. pynetdicom offers no
    setting for this (its issue #1085): its negotiation is wrapped here, once per process;
    which syntaxes are accepted at all is unchanged."""
    from pynetdicom import acse

    negotiate = acse.negotiate_as_acceptor
    if getattr(negotiate, "takes_the_senders_order", False):
        return

    def in_the_senders_order(rq_contexts, ac_contexts, roles=None):
        result, ac_roles = negotiate(rq_contexts, ac_contexts, roles)
        proposed = {cx.context_id: cx.transfer_syntax for cx in rq_contexts}
        supported = {cx.abstract_syntax: set(cx.transfer_syntax) for cx in ac_contexts}
        for cx in result:
            if cx.result == 0x00:  # accepted: the sender's first that the node also takes
                cx.transfer_syntax = [next(ts for ts in proposed[cx.context_id]
                                           if ts in supported[cx.abstract_syntax])]
        return result, ac_roles

    in_the_senders_order.takes_the_senders_order = True  # type: ignore[attr-defined]
    acse.negotiate_as_acceptor = in_the_senders_order


def make_ae(ae_title: str | None = None) -> NodeAE:
    _take_the_senders_transfer_syntax()
    ae = NodeAE(ae_title=ae_title or get_settings().node_ae_title)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES[:4])
    ae.maximum_pdu_size = MAXIMUM_PDU  # big PDUs: few Python round trips; bounded memory
    ae.maximum_associations = 32
    ae.network_timeout = 120
    ae.dimse_timeout = 120
    ae.acse_timeout = 30
    return ae


class WorkerGone(Exception):
    """The de-identification process died (the batch stays in the spool and is retried)."""


class WorkerCannotStart(WorkerGone):
    """The de-identification process ended before it could take a batch (its setup failed):
    no record is at fault."""


_READY = "ready"  # the child's first message once set up; else a _CannotStart


class WorkerProcess:
    """``ingest_many`` in a child process. The receiving threads are Python too: sharing one
    GIL with de-identification slowed every acknowledgement (20 s of receiving became 30-38 s
    for 2.5 GB). Batches go over a pipe; a dead child is restarted at the next batch, and the
    batch it had stays in the spool (intake is idempotent: each file is stored once).

    The child ignores SIGINT (the node stops it after the batch in hand) and exits when the
    node's end of the pipe closes, e.g. when the node was killed."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")  # no copied threads or sockets
        self._conn = None
        self._process = None
        self._lock = threading.Lock()
        self._in_flight = 0  # messages sent whose replies have not been taken

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child,),
                                        name="nccid-node-worker", daemon=True)
        process.start()
        child.close()
        self._conn, self._process = parent, process
        try:
            ready = parent.recv()
        except (EOFError, OSError) as exc:
            ready = _CannotStart(f"ended ({type(exc).__name__})")
        if ready != _READY:
            self._stop_process()
            why = ready.why if isinstance(ready, _CannotStart) else "an unknown reply"
            raise WorkerCannotStart(f"the de-identification process could not start ({why})")

    def ingest(self, site_code: str, source: str, items: list) -> list[IngestOutcome]:
        """``ingest_many`` of these files (bytes or views), sent over the pipe."""
        return self._ask(("files", site_code, source, len(items)), items)

    def ingest_records(self, directory: Path, records: list) -> list[tuple[str, IngestOutcome]]:
        """Sealed spool records, which the child reads and decrypts itself: (site code,
        outcome) for each, in order; (\"\", None) for a record that fails authentication."""
        return self._ask(("records", str(directory), records), [])  # places only, no data

    def send_records(self, directory: Path, records: list) -> None:
        """``ingest_records`` started, not waited for: ``next_reply`` gives its answer. The
        child prepares one batch while the batch before it is made durable and recorded."""
        with self._lock:
            self._send(("records", str(directory), records), [])

    def next_reply(self) -> list[tuple[str, IngestOutcome]]:
        """The reply to the oldest message sent and not yet answered."""
        with self._lock:
            return self._receive()

    def _ask(self, message: tuple, items: list):
        with self._lock:
            if self._in_flight:
                raise RuntimeError("a reply is still awaited: take it before asking again")
            self._send(message, items)
            return self._receive()

    def _send(self, message: tuple, items: list) -> None:
        if self._process is None or not self._process.is_alive():
            if self._in_flight:  # what it had stays in the spool and is taken again
                self._gone("died with batches in hand")
            self._start()
        try:
            self._conn.send(message)
            for item in items:
                self._conn.send_bytes(item)
        except (EOFError, OSError) as exc:
            self._gone(f"ended ({type(exc).__name__})")
        self._in_flight += 1

    def _receive(self):
        if self._conn is None or not self._in_flight:
            raise WorkerGone("the de-identification process has no reply to give")
        try:
            reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._gone(f"ended ({type(exc).__name__})")
        self._in_flight -= 1
        if isinstance(reply, str):  # the child's own failure, by type name only
            if self._in_flight:  # replies still due would answer the wrong questions
                self._stop_process()
            raise WorkerGone(f"the de-identification process failed ({reply})")
        return reply

    def _gone(self, why: str) -> NoReturn:
        self._stop_process()
        raise WorkerGone(f"the de-identification process {why}") from None

    def close(self, timeout: float = 60.0) -> None:
        with self._lock:
            if self._process is None:
                return
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._process.join(timeout)
            self._stop_process()

    def _stop_process(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join(10)
        if self._conn is not None:
            self._conn.close()
        self._conn = self._process = None
        self._in_flight = 0


def _worker_main(conn) -> None:
    """The child: batches in, outcomes out, until the pipe closes or ``None`` arrives."""
    import signal

    # Ctrl-C reaches the whole process group: the node stops this process itself, after the
    # batch in hand. SIGTERM keeps its default (multiprocessing's exit handler and service
    # managers use it): a batch cut short stays in the spool and is taken again.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICENESS)
    try:  # told to the node, not a death counted against the first record waiting
        from nccid.cli.common import setup_django

        setup_django()
        from .intake import long_run_collector
        from .logsafe import protect_logs

        protect_logs()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - told to the node (_why_not_started)
        _tell(conn, _CannotStart(_why_not_started(exc)))
        return
    if not _tell(conn, _READY):
        return
    with long_run_collector():
        _serve_batches(conn)


@dataclass(frozen=True)
class _CannotStart:
    """Why the child could not set up (``_why_not_started``)."""

    why: str


def _why_not_started(exc: BaseException) -> str:
    """The line an operator's error says (a setting or file to mend, as a command prints it);
    of any other, its type and place (its message may quote a value)."""
    try:
        from nccid.cli.common import UserError
        from nccid.config import ConfigError
        from nccid.identity.keys import KeyFileError

        told = isinstance(exc, (UserError, ConfigError, KeyFileError)) and str(exc)
    except ImportError:  # (a broken install: the type says it)
        told = ""
    return told.splitlines()[0] if told else f"{type(exc).__name__} at {_where(exc)}"


def _tell(conn, message: object) -> bool:
    try:
        conn.send(message)
        return True
    except OSError:  # the node is gone
        return False


def _serve_batches(conn) -> None:
    replies = _Replies(conn)
    try:
        while True:
            try:
                message = conn.recv()
                if message is None:
                    return
                if message[0] == "files":
                    _, code, source, count = message
                    items = [conn.recv_bytes() for _ in range(count)]
            except (EOFError, OSError):
                return  # the node is gone
            if message[0] == "files":
                answered = replies.now(partial(_ingest_files, code, source, items))
                del items
            else:
                answered = replies.later(partial(_prepare_records, Path(message[1]), message[2]),
                                         _finish_records)
            if not answered:
                return
    finally:
        replies.close()


class _Replies:
    """The child's answers, in the order asked. A batch of spool records is prepared (read,
    decrypted, de-identified, its writes started) on the calling thread and finished (made
    durable, recorded, answered) on one other thread, so that the next batch is prepared
    meanwhile: the import's overlap, for the node. At most one batch finishes at a time."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="nccid-finish")
        self._finishing: Future | None = None

    def now(self, work: Callable[[], object]) -> bool:
        """Answer ``work()``, done here once the batch finishing has been answered; False
        once the node is gone."""
        return self._wait() and self._send(_attempt(work))

    def later(self, prepare: Callable[[], object], finish: Callable[[object], object]) -> bool:
        """``prepare()`` here, then ``finish`` of it answered from the finishing thread."""
        prepared = _attempt(prepare)
        if not self._wait():
            return False
        if isinstance(prepared, str):  # failed: answered now, in its turn
            return self._send(prepared)
        self._finishing = self._thread.submit(self._finish, finish, prepared)
        return True

    def _finish(self, finish: Callable[[object], object], prepared: object) -> bool:
        return self._send(_attempt(partial(finish, prepared)))

    def _wait(self) -> bool:
        finishing, self._finishing = self._finishing, None
        return finishing is None or finishing.result()

    def _send(self, reply) -> bool:
        try:
            self._conn.send(reply)
            return True
        except OSError:
            return False

    def close(self) -> None:
        from .intake import close_thread_connections

        self._wait()  # the batch in hand is finished (its files stored once) before exiting
        self._thread.submit(close_thread_connections).result()
        self._thread.shutdown()


def _attempt(work: Callable[[], object]):
    """``work()``, or the type name of its failure (messages may quote values: never sent).
    The thread's database connections are checked first, as a request's are: one the server
    ended while the process waited (a restart) is replaced, not the cause of a failure."""
    from django.db import close_old_connections

    try:
        close_old_connections()
        return work()
    except Exception as exc:  # noqa: BLE001 - reported by type
        log.error("the de-identification process failed (%s at %s)", type(exc).__name__,
                  _where(exc))
        return type(exc).__name__


def _ingest_files(code: str, source: str, items: list) -> list[IngestOutcome]:
    from nccid.accounts.models import Site

    from .intake import ingest_many

    site = Site.objects.filter(code=code).first()
    if site is None:
        return [IngestOutcome(IngestStatus.REJECTED, "the site is no longer registered")
                ] * len(items)
    return ingest_many(items, site, source)


@dataclass
class _PreparedRecords:
    replies: list  # (site code, outcome) per record; ("", None) if it failed authentication
    groups: list = field(default_factory=list)  # (site code, record indices, PreparedBatch)


def _ingest_records(directory: Path, records: list) -> list[tuple[str, IngestOutcome | None]]:
    """The child's side of ``WorkerProcess.ingest_records``: open, group by site, ingest."""
    return _finish_records(_prepare_records(directory, records))


def _prepare_records(directory: Path, records: list) -> _PreparedRecords:
    """Open (read and decrypt) each record, group them by site and source, and prepare each
    group (``intake.prepare_many``)."""
    from nccid.accounts.models import Site
    from nccid.identity.service import get_keyring

    from .intake import prepare_many

    keyring = get_keyring()
    prepared = _PreparedRecords([("", None)] * len(records))
    groups: dict[tuple[str, str], list[tuple[int, bytes]]] = defaultdict(list)
    for index, record in enumerate(records):
        try:
            code, source, data = open_record(directory, keyring, record)
        except InvalidTag:
            continue  # the node keeps its segment for an operator
        groups[(code, source)].append((index, data))
    for (code, source), items in groups.items():
        indices = [index for index, _ in items]
        site = Site.objects.filter(code=code).first()
        if site is None:
            gone = IngestOutcome(IngestStatus.REJECTED, "the site is no longer registered")
            for index in indices:
                prepared.replies[index] = (code, gone)
            continue
        batch = prepare_many([data for _, data in items], site, source)
        prepared.groups.append((code, indices, batch))
    return prepared


def _finish_records(prepared: _PreparedRecords) -> list[tuple[str, IngestOutcome | None]]:
    from .intake import finish_many

    replies = prepared.replies
    for code, indices, batch in prepared.groups:
        for index, outcome in zip(indices, finish_many(batch), strict=True):
            replies[index] = (code, outcome)
    return replies


# Connections that have not sent a whole A-ASSOCIATE-RQ yet, at most: in all, and from one
# address. A site's request follows its connection within milliseconds; a peer that connects
# and waits holds a thread (two once its association starts) and a slot of the association
# limit until its ARTIM timer (30 s), so a few suffice and more are closed at once.
UNASSOCIATED_LIMIT = 16
UNASSOCIATED_PER_ADDRESS = 8
REFUSALS_LOGGED_EVERY = 60.0  # seconds: one log line for a burst of closed connections


class _Unassociated:
    """The node's connections that have not yet sent a whole A-ASSOCIATE-RQ (socket -> peer
    address). A connection leaves once its request arrived (``_QuickDUL``), or once closed."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._held: dict[socket.socket, str] = {}
        self._refused = 0
        self._logged_at: float | None = None

    def admit(self, request: socket.socket, address: str) -> bool:
        with self._lock:
            held = list(self._held.values())
            if (len(held) >= UNASSOCIATED_LIMIT
                    or held.count(address) >= UNASSOCIATED_PER_ADDRESS):
                self._note_refusal(address, held)
                return False
            self._held[request] = address
            return True

    def leave(self, request: socket.socket | None) -> None:
        with self._lock:
            if self._held.pop(request, None) is not None:
                self._lock.notify_all()

    def wait_none(self, timeout: float) -> bool:
        """True once no connection is waiting to send its request (within ``timeout``)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._held, timeout)

    def _note_refusal(self, address: str, held: list[str]) -> None:
        self._refused += 1
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < REFUSALS_LOGGED_EVERY:
            return
        log.warning("closed %d connection(s) at once, the last from %s: %d connection(s) (%d "
                    "from that address) had not sent their association request yet (limits: %d "
                    "in all, %d per address)", self._refused, address, len(held),
                    held.count(address), UNASSOCIATED_LIMIT, UNASSOCIATED_PER_ADDRESS)
        self._refused, self._logged_at = 0, now


class _Shares:
    """The node's sites' associations by calling AE title and by peer address: one past
    either share (the settings ``node_associations_per_ae_title``, 8, and
    ``node_associations_per_address``, 16, of the 32) is refused with A-ASSOCIATE-RJ
    (transient, local limit exceeded). AE titles are no secret: one peer holding all 32 with a
    C-ECHO a minute each turned every other site away, for as long as it liked."""

    def __init__(self, per_title: int, per_address: int) -> None:
        self.per_title, self.per_address = per_title, per_address
        self._changed = threading.Condition()
        self._held: dict[object, tuple[str, str]] = {}  # association -> (AE title, address)

    def admit(self, assoc: object, title: str, address: str) -> str | None:
        """None, and ``assoc`` counted until it ``leave``s; or why it is refused."""
        with self._changed:
            held = list(self._held.values())
            by_title = sum(1 for other, _ in held if other == title)
            by_address = sum(1 for _, other in held if other == address)
            if by_title >= self.per_title:
                return (f"its AE title holds {by_title} association(s) already: at most "
                        f"{self.per_title} per AE title (node_associations_per_ae_title)")
            if by_address >= self.per_address:
                return (f"its address holds {by_address} association(s) already: at most "
                        f"{self.per_address} per address (node_associations_per_address)")
            self._held[assoc] = (title, address)
            return None

    def leave(self, assoc: object) -> None:
        with self._changed:
            if self._held.pop(assoc, None) is not None:
                self._changed.notify_all()

    def held(self, title: str) -> int:
        """Associations counted against ``title`` now."""
        with self._changed:
            return sum(1 for other, _ in self._held.values() if other == title)

    def wait_until(self, predicate: Callable[[_Shares], bool], timeout: float) -> bool:
        """Wait (up to ``timeout`` seconds) until ``predicate(shares)``: tests, monitoring."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)


class NodeServer(ThreadedAssociationServer):
    """The listening node with its spool and drain; ``shutdown()`` stops all three."""

    spool: Spool
    drain: Drain | None = None

    def __init__(self, *args, **kwargs) -> None:
        settings = get_settings()
        self.unassociated = _Unassociated()
        self.shares = _Shares(settings.node_associations_per_ae_title,
                              settings.node_associations_per_address)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        """A connection beyond the ``_Unassociated`` limits is closed at once (on the accepting
        thread, in order): no thread, no association slot, until its ARTIM timer."""
        if not self.unassociated.admit(request, str(client_address[0])):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.unassociated.leave(request)
            raise

    def shutdown_request(self, request) -> None:
        self.unassociated.leave(request)
        super().shutdown_request(request)

    def wait_drained(self, timeout: float) -> bool:
        """True once everything received has an outcome (stored, rejected, …)."""
        return self.spool.wait_empty(timeout)

    def spool_backlog(self) -> Backlog:
        return self.spool.backlog()

    def shutdown(self) -> None:
        """Stop accepting, let the drain finish its batch in hand, close the spool."""
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        super().shutdown()
        if self.drain is None or self.drain.stop():
            self.spool.close()  # not under a drain still running: the process ends anyway


def open_spool(directory: Path | None = None) -> Spool:
    from nccid.identity.service import get_keyring

    settings = get_settings()
    return Spool(directory or settings.spool_dir, get_keyring(), settings.spool_segment_bytes)


class NodeListenError(Exception):
    """The node cannot listen on its address; the message says which and why."""


def start_node(host: str | None = None, port: int | None = None,
               ae_title: str | None = None, spool_dir: Path | None = None,
               worker_process: bool = False) -> NodeServer:
    """Start the node in background threads; call ``.shutdown()`` on the result to stop it.

    What an earlier run left in the spool is drained first, before anything received now.
    ``worker_process``: de-identify in a child process (``nccid node`` does, per the
    ``node_worker_process`` setting) rather than on a thread of this one."""
    from .logsafe import protect_logs

    protect_logs()
    settings = get_settings()
    spool = open_spool(spool_dir)
    _log_recovery(spool)
    ae = make_ae(ae_title)
    ae.site_titles.current()  # read now: the sites are accepted should the database then fail
    address = (host or settings.node_host, settings.node_port if port is None else port)
    handlers = [(evt.EVT_C_STORE, handle_store, [spool]), (evt.EVT_C_ECHO, handle_echo),
                (evt.EVT_REJECTED, handle_rejected)]
    try:
        server = NodeServer(
            ae, address, ae.ae_title, ae.supported_contexts, None, evt_handlers=handlers,
            request_handler=_NoDelayHandler,
        )
    except OSError as exc:  # the address is taken, or not this host's
        spool.close()
        raise NodeListenError(f"cannot listen on {address[0]}:{address[1]}: "
                              f"{exc.strerror or exc} (is another node running? choose another "
                              "port with --port or node_port)") from None
    except BaseException:
        spool.close()
        raise
    server.spool = spool
    if settings.node_drain:
        server.drain = Drain(spool, WorkerProcess() if worker_process else None)
        server.drain.start()
    else:
        log.warning("node_drain is off: received instances stay in the spool (%s), and waiting "
                    "images are not linked, until a node runs with node_drain on",
                    spool.directory)
    thread = threading.Thread(target=server.serve_forever, name="nccid-node", daemon=True)
    thread.start()
    ae._servers.append(server)
    log.info("DICOM node %s listening on %s:%d", ae.ae_title, *server.server_address[:2])
    return server


def _log_recovery(spool: Spool) -> None:
    """What an earlier run left in the spool. Its segments are replayed whole: the records a
    clean stop had already stored come back as duplicates (stored once), the others are stored."""
    backlog, waiting = spool.backlog(), spool.not_drained_at_start
    if not backlog.records:
        return
    if waiting is None:  # no clean stop noted where its drain was (killed, or an older node)
        log.info("recovering %d instance(s) (%.1f MB) left in the spool (replayed by whole "
                 "segments: those stored before the node stopped come back as duplicates)",
                 backlog.records, backlog.bytes / 1e6)
        return
    log.info("recovering %d instance(s) not yet stored when the node stopped; their spool "
             "segments are replayed whole: %d record(s) (%.1f MB), the other %d stored "
             "already (they come back as duplicates)", waiting, backlog.records,
             backlog.bytes / 1e6, backlog.records - waiting)


class _NoUpkeep:
    """With node_drain off: the pause switch stops storing, so no linking pass runs either."""

    @staticmethod
    def tick() -> bool:
        return False


def linking_upkeep(server: NodeServer) -> LinkingUpkeep | _NoUpkeep:
    """The node's linking pass (waiting images a killed or stopped linker left, upkeep.py),
    run only by a node that drains: node_drain off means nothing is stored until it is on."""
    return LinkingUpkeep() if server.drain is not None else _NoUpkeep()


def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the node until interrupted (``nccid node``)."""
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1`: thread stacks (code places only)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # before listening: no early kill
    try:
        server = start_node(host, port, worker_process=get_settings().node_worker_process)
    except (SpoolError, NodeListenError) as exc:
        from nccid.cli.common import UserError

        raise UserError(str(exc)) from None
    upkeep = linking_upkeep(server)
    try:
        upkeep.tick()
        while not stop.wait(1.0):  # a timed wait: the handler runs between waits
            upkeep.tick()
    except KeyboardInterrupt:
        pass
    finally:
        started = time.perf_counter()
        server.shutdown()
        log.info("DICOM node stopped in %.1f s; %d instance(s) left in the spool",
                 time.perf_counter() - started, server.spool_backlog().records)
