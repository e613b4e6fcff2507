"""The DICOM node: a pynetdicom storage SCP that hands every received file to ``ingest``.

- C-ECHO, and C-STORE for every storage SOP class in every common transfer syntax; the file
  is built from the dataset bytes exactly as received (never decoded here, never transcoded).
- One calling AE title per site (``Site.ae_title``), read from the database at each
  association, so a site added while the node runs is accepted at once; any other calling AE
  title is refused with A-ASSOCIATE-RJ.
- Each association runs in its own thread with its own database connection, closed when the
  association ends. Logs say who sent how much, never what.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from pynetdicom import (
    AE as ApplicationEntity,
)
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    evt,
)
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from nccid.config import get_settings

from .outcome import IngestStatus

log = logging.getLogger("nccid.imaging.node")

# C-STORE statuses (PS3.4 B.2.3): success, and "cannot understand" for a file we refuse.
SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700
# Longer than any AE title (16 chars): matches no caller, so "no site" refuses everyone.
_NO_SITE = "-no-site-registered-"


def site_for_ae_title(ae_title: str):
    from nccid.accounts.models import Site

    return Site.objects.filter(ae_title=ae_title.strip()).first()


class NodeAE(ApplicationEntity):
    """An AE whose accepted calling AE titles are the sites' ones, as the database has them now."""

    @property
    def require_calling_aet(self) -> list[str]:  # type: ignore[override]
        from nccid.accounts.models import Site

        titles = [t.strip() for t in Site.objects.exclude(ae_title=None)
                  .exclude(ae_title="").values_list("ae_title", flat=True)]
        return titles or [_NO_SITE]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        pass  # the list comes from the database, always


class _DjangoAssociation(Association):
    """An association thread that gives back its database connection when it ends."""

    def run(self) -> None:
        from django.db import close_old_connections, connections

        close_old_connections()
        try:
            super().run()
        finally:
            _log_summary(self)
            connections.close_all()


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


class _NoDelayHandler(RequestHandler):
    def handle(self) -> None:
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        super().handle()

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        assoc.__class__ = _DjangoAssociation
        assoc.dul.__class__ = _QuickDUL
        return assoc


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


def handle_store(event) -> int:
    """C-STORE: the raw file bytes go to the intake pipeline; its outcome sets the status."""
    from .intake import ingest

    assoc = event.assoc
    tally = _tally(assoc)
    site = getattr(assoc, "_nccid_site", None)
    if site is None:
        site = site_for_ae_title(assoc.requestor.ae_title)
        if site is None:  # the site was removed during the association
            return OUT_OF_RESOURCES
        assoc._nccid_site = site
        tally.site = site.code
    try:
        data = event.encoded_dataset()
    except Exception as exc:  # noqa: BLE001
        log.warning("site %s sent a dataset that could not be encoded (%s)", site.code,
                    type(exc).__name__)
        tally.counts["rejected"] += 1
        return CANNOT_UNDERSTAND
    outcome = ingest(data, site, source="node")
    tally.counts[outcome.status.value] += 1
    tally.bytes += len(data)
    if outcome.status is IngestStatus.REJECTED:
        log.warning("site %s: an instance was rejected: %s", site.code, outcome.reason)
        return CANNOT_UNDERSTAND
    return SUCCESS


def handle_echo(event) -> int:
    return SUCCESS


def make_ae(ae_title: str | None = None) -> NodeAE:
    ae = NodeAE(ae_title=ae_title or get_settings().node_ae_title)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES[:4])
    ae.maximum_pdu_size = 0  # no limit: senders use big PDUs, far fewer Python round trips
    ae.maximum_associations = 32
    ae.network_timeout = 120
    ae.dimse_timeout = 120
    ae.acse_timeout = 30
    return ae


def start_node(host: str | None = None, port: int | None = None,
               ae_title: str | None = None) -> ThreadedAssociationServer:
    """Start the node in background threads; call ``.shutdown()`` on the result to stop it."""
    from .logsafe import protect_logs

    protect_logs()
    settings = get_settings()
    ae = make_ae(ae_title)
    address = (host or settings.node_host, settings.node_port if port is None else port)
    handlers = [(evt.EVT_C_STORE, handle_store), (evt.EVT_C_ECHO, handle_echo)]
    server = ThreadedAssociationServer(
        ae, address, ae.ae_title, ae.supported_contexts, None, evt_handlers=handlers,
        request_handler=_NoDelayHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="nccid-node", daemon=True)
    thread.start()
    ae._servers.append(server)
    log.info("DICOM node %s listening on %s:%d", ae.ae_title, *server.server_address[:2])
    return server


def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the node until interrupted (``nccid node``)."""
    import signal

    server = start_node(host, port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
