"""An S3 store that stops answering with its connections still open (its process paused by
SIGSTOP, as a hung server or a dead link looks) fails each warehouse operation with a
StorageError naming storage_url within the configured bound, instead of hanging it (a 200 KB
write waited more than 100 s: s3fs's read timeout does not cover a body being sent). An upload
on a slow but working link is not cut off by that bound."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import pytest

from nccid.warehouse.storage import StorageError, Warehouse

BOUND = 2.0  # the configured timeout: seconds the store may take to answer
WITHIN = BOUND + 8  # the bound and a margin for a loaded machine (it hung for minutes)


@pytest.fixture
def warehouse(s3_server):
    url = f"s3://{s3_server.make_bucket('bound')}/nccid"
    # the default bound for the first write (a fresh SeaweedFS bucket takes a while to set up)
    Warehouse(url, s3_server.options).write_atomic("a/stored", b"here")
    warehouse = Warehouse(url, {**s3_server.options, "timeout": BOUND})
    assert warehouse.read("a/stored") == b"here"  # a pooled connection is open before the pause
    return warehouse


@pytest.fixture
def s3_fresh_warehouse(s3_server):
    warehouse = Warehouse(f"s3://{s3_server.make_bucket('health')}/nccid",
                          {**s3_server.options, "timeout": 600})
    warehouse.check_answers(within=10)  # a pooled connection is open before the pause
    return warehouse


def _fails_in_time(action, limit: float) -> None:
    started = time.monotonic()
    with pytest.raises(StorageError, match="storage_url"):
        action()
    took = time.monotonic() - started
    assert took < limit, f"took {took:.1f} s"


def test_writes_to_a_store_that_stopped_answering_fail_within_the_bound(s3_server, warehouse):
    body = b"x" * 200_000  # more than the socket buffers take while nobody reads
    with s3_server.paused():
        _fails_in_time(lambda: warehouse.write_atomic("a/one", body), WITHIN)
        _fails_in_time(lambda: warehouse.write_many({"a/two": body, "a/three": body}), WITHIN)
        batch = warehouse.batch()
        batch.put("a/four", [body, body])
        _fails_in_time(batch.publish, WITHIN)
    assert warehouse.read("a/stored") == b"here"  # answers again once resumed


def test_reads_from_a_store_that_stopped_answering_fail_within_the_bound(s3_server, warehouse):
    with s3_server.paused():
        _fails_in_time(lambda: warehouse.exists("a/stored"), WITHIN)
        _fails_in_time(lambda: warehouse.list("a"), WITHIN)
        _fails_in_time(lambda: warehouse.read("a/stored"), WITHIN)


def test_a_health_check_answers_within_its_own_short_bound(s3_server, s3_fresh_warehouse):
    """However long the configured bound, the check gives up after the seconds it is given."""
    with s3_server.paused():
        _fails_in_time(lambda: s3_fresh_warehouse.check_answers(within=1), 4)
    s3_fresh_warehouse.check_answers(within=5)


def test_an_upload_slower_than_the_bound_on_a_working_link_is_not_cut_off(s3_server):
    """At 1 MB/s, 6 MB take 6 s, three times the bound: allowed for at min_upload_rate."""
    url = f"s3://{s3_server.make_bucket('slow')}/nccid"
    Warehouse(url, s3_server.options).write_atomic("a/first", b"set up")
    with throttled_proxy(s3_server.endpoint_url, bytes_per_second=1_000_000) as endpoint:
        options = {**s3_server.options, "endpoint_url": endpoint, "timeout": BOUND,
                   "min_upload_rate": 500_000}
        warehouse = Warehouse(url, options)
        body = os.urandom(6_000_000)
        started = time.monotonic()
        warehouse.write_atomic("a/slow", body)
        assert time.monotonic() - started > 2 * BOUND  # the link was slow indeed
    assert Warehouse(url, s3_server.options).read("a/slow") == body


@contextlib.contextmanager
def throttled_proxy(endpoint_url: str, bytes_per_second: int):
    """A TCP proxy to ``endpoint_url`` passing what the client sends at ``bytes_per_second``
    (answers unthrottled), with small buffers so the client feels the pace; its URL."""
    host, port = endpoint_url.rsplit("//", 1)[1].split(":")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32_768)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    sockets = [listener]

    def pump(source, target, rate):
        chunk = 16_384
        with contextlib.suppress(OSError):
            while data := source.recv(chunk):
                target.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)  # pacing the link, not waiting for an event
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def accept():
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                upstream = socket.create_connection((host, int(port)))
                sockets.extend((client, upstream))
                for args in ((client, upstream, bytes_per_second), (upstream, client, 0)):
                    threading.Thread(target=pump, args=args, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
