"""Object storage for the warehouse over fsspec: a local folder or any S3-compatible store.

Pure library (no Django). Keys are ``/``-separated paths relative to the warehouse root, the
same on every backend. Writes are atomic: a reader sees the whole object or nothing.
- local: write to a hidden temporary name in the same folder, fsync, rename (and fsync the folder);
  a batch: write every temporary, sync the filesystem once, rename them all, sync again (a
  batch's objects of 64 KB and more are written with O_DIRECT, see ``_write_direct``). A
  writer first notes the folders it writes into in its journal, so that the temporaries of a
  process killed mid-write are removed by the next process to write (see ``_Journal``);
- S3: a single PUT (or a multipart upload, completed in one request) is atomic by itself.
Every write returns the SHA-256 of what was written and checks the stored size (a batch on S3:
one listing of each folder it wrote).

On S3 every request is bounded (``BOUND_OPTIONS``): a store that stops answering, even with
the connection still open, fails the operation with StorageError instead of hanging it.

``WriteBatch`` writes many objects with one durability step: each object is hashed and written
under its temporary name by a small thread pool as soon as it is handed over (the caller goes
on preparing the next one), then ``publish()`` makes them durable with one ``syncfs``, renames
them all and syncs the names. The caller decides when to publish (e.g. under its database
lock).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import ctypes
import errno
import fcntl
import functools
import hashlib
import itertools
import logging
import mmap
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import fsspec
import fsspec.asyn
import numpy

from nccid.processes import HOST as _HOST
from nccid.processes import pid_runs

log = logging.getLogger(__name__)
TEMP_PREFIX = ".tmp-"  # local temporaries; never listed, never a valid key
CHUNK = 8 * 1024 * 1024
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StorageError(Exception):
    """A warehouse operation failed; the message names the key, never file contents."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the root or hide as temporaries (``..``, ``/x``, ``.tmp-``)."""
    parts = key.split("/")
    if not key or any(not _SAFE_SEGMENT.match(p) or p.startswith(TEMP_PREFIX) for p in parts):
        raise StorageError(f"invalid warehouse key {key!r}")
    return key


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# Our storage options that bound each S3 request (not s3fs's): how long the store may take to
# answer, and the slowest upload rate allowed for on top of that (see ``_bounded_s3``).
BOUND_OPTIONS = {"timeout": 30.0, "min_upload_rate": 1_000_000}


def s3_filesystem_options(options: dict) -> dict:
    """s3fs keyword arguments from our storage options (credentials default to AWS_* env)."""
    opts = {k: v for k, v in options.items() if k not in BOUND_OPTIONS}
    known = {}
    for ours, theirs in (("access_key_id", "key"), ("aws_access_key_id", "key"),
                         ("secret_access_key", "secret"), ("aws_secret_access_key", "secret"),
                         ("region", None)):
        if ours in opts:
            value = opts.pop(ours)
            if theirs:
                known[theirs] = value
            else:
                known.setdefault("client_kwargs", {})["region_name"] = value
    known.update(opts)
    return known


def _bounded_s3(options: dict):
    """An s3fs filesystem for ``options`` whose every request is bounded (``BOUND_OPTIONS``).

    s3fs's own read timeout covers only waiting for an answer: a body being sent to a store
    that stopped reading it (a paused process, a dead link holding the connection open)
    waited forever, and its retries multiplied each wait. Here each request, retries
    included, gets ``timeout`` seconds plus the bytes being sent at that moment (its own and
    those of the requests sharing the link) at ``min_upload_rate``: a large upload on a slow
    but working link is not cut off, a store that answers nothing fails within the bound."""
    timeout = float(options.get("timeout", BOUND_OPTIONS["timeout"]))
    rate = float(options.get("min_upload_rate", BOUND_OPTIONS["min_upload_rate"]))
    if timeout <= 0 or rate <= 0:
        raise StorageError("storage_options: timeout and min_upload_rate must be more than 0")
    kwargs = s3_filesystem_options(options)
    config = kwargs.setdefault("config_kwargs", {})
    config.setdefault("connect_timeout", timeout)
    config.setdefault("read_timeout", timeout)  # also a stall limit while reading an object
    fs = _bounded_s3_class()(skip_instance_cache=True, **kwargs)
    fs.nccid_timeout, fs.nccid_min_rate = timeout, rate
    return fs


@functools.cache
def _bounded_s3_class() -> type:
    import s3fs  # only S3 warehouses pay for importing botocore

    class BoundedS3FileSystem(s3fs.S3FileSystem):
        nccid_timeout = BOUND_OPTIONS["timeout"]
        nccid_min_rate = BOUND_OPTIONS["min_upload_rate"]
        _sending = 0  # bytes of the request bodies in flight (on the filesystem's loop only)

        async def set_session(self, *args, **kwargs):
            client = await super().set_session(*args, **kwargs)
            if not getattr(client, "_nccid_bounded", False):
                client.meta.events.register("before-call.s3", _reply_timeout)
                client._nccid_bounded = True
            return client

        async def _call_s3(self, method, *args, **kwargs):
            size = _body_size(kwargs.get("Body"))
            self._sending += size
            seconds = self.nccid_timeout + self._sending / self.nccid_min_rate
            # The read timeout starts once the body is handed to the kernel, whose buffers
            # may still hold megabytes: on a slow link, give the reply the whole bound.
            token = _reply_within.set(seconds if size else None)
            try:
                async with asyncio.timeout(seconds) as bound:
                    return await super()._call_s3(method, *args, **kwargs)
            except TimeoutError:
                if not bound.expired():
                    raise
                # not a TimeoutError: s3fs would retry it, multiplying the bound
                raise StorageError(f"the warehouse's object store (storage_url) did not answer "
                                   f"within {seconds:.0f} s ({method}{_sized(size)})") from None
            finally:
                _reply_within.reset(token)
                self._sending -= size

    return BoundedS3FileSystem


# The read timeout of the request being made in this task, if not the client's (see above).
_reply_within: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "nccid_reply_within", default=None)


def _reply_timeout(params: dict, **_) -> None:
    """botocore ``before-call`` hook: this request's read timeout, if one is set."""
    seconds = _reply_within.get()
    if seconds is not None:
        params["context"]["read_timeout"] = seconds


def _body_size(body) -> int:
    try:
        return len(body) if body is not None else 0
    except TypeError:  # a file object: s3fs sends bytes, so this is only a fallback
        return 0


def _sized(size: int) -> str:
    return f" of {size:,} bytes" if size else ""


def _local_file_exists(path: str) -> bool:
    """Only "no such file" is no: an unreadable folder raises rather than pass for empty."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


class Warehouse:
    """The warehouse's object store at ``url`` (a folder path, ``file://…`` or ``s3://bucket/prefix``)."""

    def __init__(self, url: str, options: dict | None = None) -> None:
        self.url = str(url)
        self.options = dict(options or {})
        protocol, rest = fsspec.core.split_protocol(self.url)
        self.protocol = protocol or "file"
        if self.protocol == "file":
            self.is_local = True
            self.fs = fsspec.filesystem("file")
            self.root = str(Path(rest).expanduser().resolve())
        elif self.protocol in ("s3", "s3a"):
            self.is_local = False
            # Fresh instance: cached ones would keep stale credentials across tests/settings.
            self.fs = _bounded_s3(self.options)
            self.root = rest.strip("/")
            if not self.root:
                raise StorageError("an S3 warehouse URL needs a bucket: s3://bucket[/prefix]")
        else:
            raise StorageError(f"unsupported warehouse URL scheme {self.protocol!r} (use a folder or s3://)")

    def __repr__(self) -> str:
        return f"Warehouse({self.url!r})"

    # -- paths ---------------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def _key_of(self, path: str) -> str:
        return path[len(self.root) + 1:] if path.startswith(self.root + "/") else path

    @property
    def bucket(self) -> str:
        return self.root.split("/", 1)[0]

    # -- lifecycle -----------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the folder (local) or the bucket (S3) if missing."""
        if self.is_local:
            os.makedirs(self.root, exist_ok=True)
            return
        try:
            if not self.fs.exists(self.bucket):
                self.fs.mkdir(self.bucket)
        except Exception as exc:  # botocore raises many kinds; the message names the bucket
            raise StorageError(f"cannot reach or create bucket {self.bucket!r}: {exc}") from exc

    def check_answers(self, within: float) -> None:
        """StorageError unless the folder (local) or the bucket (S3) is there, said within
        ``within`` seconds on S3 (a health check must not wait on a store that hangs)."""
        if self.is_local:
            there = self.fs.exists(self.root)
        else:
            try:
                there = fsspec.asyn.sync(self.fs.loop, self.fs._exists, self.bucket, timeout=within)
            except fsspec.exceptions.FSTimeoutError:
                raise StorageError(f"the warehouse's object store (storage_url) did not answer "
                                   f"within {within:g} s") from None
        if not there:
            raise StorageError("the warehouse's folder or bucket (storage_url) does not exist")

    # -- writes --------------------------------------------------------------------------
    def write_atomic(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` atomically (replacing any old object); returns its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(key)
        if self.is_local:
            self._local_commit(path, lambda handle: handle.write(data))
        else:
            self.fs.pipe_file(path, data)
        self._check_size(key, len(data))
        return digest

    def write_file_atomic(self, key: str, local_path: str | Path) -> str:
        """Store a (possibly large) local file by streaming; returns its SHA-256."""
        local_path = Path(local_path)
        size = local_path.stat().st_size
        path = self.path(key)
        digest = hashlib.sha256()
        if self.is_local:
            def copy(handle: BinaryIO) -> None:
                with open(local_path, "rb") as source:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        handle.write(chunk)
            self._local_commit(path, copy)
            result = digest.hexdigest()
        else:
            result = sha256_file(local_path)
            self.fs.put_file(str(local_path), path)  # multipart for big files: completes atomically
        self._check_size(key, size)
        return result

    def write_many(self, items: dict[str, bytes]) -> dict[str, str]:
        """Write several objects, durable together on return; on S3 the PUTs run concurrently.
        Returns key -> SHA-256."""
        if len(items) < 2:
            return {key: self.write_atomic(key, data) for key, data in items.items()}
        batch = self.batch()
        try:
            for key, data in items.items():
                batch.put(key, data)
            return batch.publish()
        finally:
            batch.discard()

    def batch(self) -> WriteBatch:
        """A ``WriteBatch`` on this warehouse."""
        return WriteBatch(self)

    def sweep_temporaries(self) -> int:
        """Remove the temporaries of writers that died mid-write (see ``_Journal``); how
        many. A process's first write here does it too; nothing to do on S3."""
        if not self.is_local:
            return 0
        with _journal_lock:
            _swept_roots.add(self.root)
            return _sweep_dead_writers(self.root)

    def _local_commit(self, path: str, writer) -> None:
        folder = os.path.dirname(path)
        journaled = _folder_in(self.root, folder)
        _journal_enter(self.root, journaled)
        try:
            os.makedirs(folder, exist_ok=True)
            fd, temp, _ = _create_temporary(folder)
            try:
                with os.fdopen(fd, "wb") as handle:
                    writer(handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, path)
            except BaseException:
                # An error (or an interrupt) before the rename leaves nothing visible behind.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
        finally:
            _journal_leave(self.root, [journaled])
        _fsync_dir(folder)

    def _check_size(self, key: str, expected: int) -> None:
        actual = self.size(key)
        if actual != expected:
            raise StorageError(f"{key}: stored {actual} bytes, expected {expected}")

    def _check_sizes(self, expected: dict[str, int]) -> None:
        """``_check_size`` for a batch on S3: one listing of each folder written (a request
        per thousand objects in it, run together), not a HEAD per object."""
        folders = sorted({self.path(key).rsplit("/", 1)[0] for key in expected})

        async def list_all() -> list:
            return await asyncio.gather(*(self.fs._ls(f, detail=True, refresh=True) for f in folders))

        stored = {entry["name"]: entry.get("size") for listing in
                  fsspec.asyn.sync(self.fs.loop, list_all) for entry in listing}
        wrong = [(key, stored.get(self.path(key)), size) for key, size in expected.items()
                 if stored.get(self.path(key)) != size]
        if wrong:
            key, actual, size = wrong[0]
            more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
            raise StorageError(f"{key}: stored {'no object' if actual is None else f'{actual} bytes'}"
                               f", expected {size}{more}")

    # -- reads ---------------------------------------------------------------------------
    def read(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"no warehouse object {key!r}") from None

    def open(self, key: str, mode: str = "rb") -> BinaryIO:
        if "r" not in mode:
            raise StorageError("open() is for reading; write with write_atomic/write_file_atomic")
        return self.fs.open(self.path(key), mode)

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``. Only "not found" means no: any other
        failure (S3 unreachable, access denied, an unreadable folder) raises StorageError, so
        a store that cannot be read never passes for one without the object."""
        try:
            info = self.fs.info(self.path(key))
        except FileNotFoundError:
            return False
        except Exception as exc:  # botocore and aiohttp raise many kinds
            raise StorageError(f"cannot tell whether {key!r} is stored: "
                               f"{type(exc).__name__}: {exc}") from exc
        return info.get("type") == "file"

    def existing(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` hold an object. Local: one stat per key (a listing of each folder
        cost more, its folders holding earlier batches' files); S3: one listing per folder
        (a request per thousand keys, against one HEAD per key)."""
        keys = set(keys)
        if self.is_local:
            return {key for key in keys if _local_file_exists(self.path(key))}
        folders = {key.rsplit("/", 1)[0] for key in keys}
        return {key for folder in folders for key in self.iter_keys(folder)} & keys

    def size(self, key: str) -> int:
        try:
            return int(self.fs.size(self.path(key)))
        except FileNotFoundError:
            raise FileNotFoundError(f"no warehouse object {key!r}") from None

    def sha256(self, key: str) -> str:
        """Re-read an object and hash it (streamed)."""
        digest = hashlib.sha256()
        with self.open(key) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (a folder-like prefix, recursive), sorted; temporaries omitted."""
        return sorted(self.iter_keys(prefix))

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        prefix = prefix.strip("/")
        base = f"{self.root}/{prefix}" if prefix else self.root
        try:
            paths = self.fs.find(base)
        except FileNotFoundError:
            return
        except StorageError:
            raise
        except Exception as exc:  # botocore and aiohttp raise many kinds: never "no keys"
            raise StorageError(f"cannot list {prefix or 'the warehouse'!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
        for path in paths:
            key = self._key_of(path.rstrip("/"))
            # temporaries and the writers' journals (no key's segment starts with a dot)
            if not any(part.startswith(".") for part in key.split("/")):
                yield key

    def delete(self, key: str) -> None:
        path = self.path(key)
        if self.is_local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        elif self.fs.exists(path):
            self.fs.rm_file(path)

    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete these objects (missing ones are fine); how many were deleted.

        On S3, one request per thousand keys. S3 answers such a request with success and lists
        the keys it could not delete (InternalError, SlowDown, AccessDenied): those raise
        StorageError naming them, once the others are deleted, so no caller takes an object
        for gone that is not. S3 does not say whether a key existed: there a missing key
        counts as deleted."""
        keys = list(dict.fromkeys(keys))
        if self.is_local:
            return sum(self._delete_local(key) for key in keys)
        deleted, failed = 0, {}
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            answer = fsspec.asyn.sync(self.fs.loop, self.fs._call_s3, "delete_objects",
                                      Bucket=self.bucket, Delete={
                "Objects": [{"Key": self.path(k).split("/", 1)[1]} for k in chunk], "Quiet": True})
            errors = answer.get("Errors") or []
            failed.update({self._key_of(f"{self.bucket}/{e['Key']}"): e.get("Code", "Error")
                           for e in errors})
            deleted += len(chunk) - len(errors)
        for folder in {self.path(k).rsplit("/", 1)[0] for k in keys}:
            self.fs.invalidate_cache(folder)  # s3fs caches listings
        if failed:
            named = ", ".join(f"{key} ({code})" for key, code in sorted(failed.items())[:10])
            more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
            raise StorageError(f"S3 did not delete {len(failed)} of {len(keys)} objects: "
                               f"{named}{more}; delete them again")
        return deleted

    def _delete_local(self, key: str) -> bool:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            return False
        return True

    def download(self, key: str, local_path: str | Path, expected_sha256: str | None = None) -> None:
        """Copy an object to a local file, checked against ``expected_sha256`` if given.

        Several processes may mirror the same object into one cache folder at once: each
        writes its own temporary (a unique name) and renames it only once its hash is checked,
        so none clobbers another's file and the target is always whole. A target that already
        holds the expected bytes (another process was first) is left as it is."""
        local_path = Path(local_path)
        if expected_sha256 and _holds(local_path, expected_sha256):
            return
        local_path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp, _ = _create_temporary(str(local_path.parent))
        try:
            with os.fdopen(fd, "wb") as target, self.open(key) as source:
                digest = _copy_hashing(source, target)
            if expected_sha256 and digest != expected_sha256:
                if _holds(local_path, expected_sha256):
                    os.unlink(temp)
                    return
                raise StorageError(f"{key}: the downloaded object's SHA-256 is {digest[:16]}…, "
                                   f"expected {expected_sha256[:16]}… (it changed or is damaged); "
                                   f"{local_path.name} was not replaced")
            os.replace(temp, local_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def local_path(self, key: str) -> Path | None:
        """The object's file on a local backend (for zero-copy readers), else None."""
        return Path(self.path(key)) if self.is_local else None


def _holds(path: Path, sha256: str) -> bool:
    """``path`` exists with these bytes (it may vanish meanwhile: then it does not)."""
    try:
        return sha256_file(path) == sha256
    except FileNotFoundError:
        return False


def _copy_hashing(source: BinaryIO, target: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest()


Buffers = bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]
_pool: ThreadPoolExecutor | None = None
# Folders this process made or found (and swept of stale temporaries), with their device:
# not checked again.
_known_folders: dict[str, int] = {}
_pool_lock = threading.Lock()


def _writer_pool() -> ThreadPoolExecutor:
    """Threads for hashing, writing and making folders (all release the GIL); shared by every batch."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="nccid-write")
        return _pool


def _parts(data: Buffers) -> list:
    """The buffers of ``data``: a list or tuple of them, or one (bytes, a view, a memory map)."""
    return list(data) if isinstance(data, (list, tuple)) else [data]


def write_all(fd: int, parts: list, offset: int | None = None) -> int:
    """``writev`` until every byte is out (a call may write less than asked); at ``offset``
    (``pwritev``) if given, else at the file's position."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    total = 0
    while views:
        if offset is None:
            written = os.writev(fd, views[:512])
        else:
            written = os.pwritev(fd, views[:512], offset + total)
        total += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]
    return total


DIRECT_FROM_BYTES = 64 * 1024    # bigger objects bypass the page cache (see _write_direct)
DIRECT_CHUNK = 4 * 1024 * 1024   # the staging buffer of each writer thread
DIRECT_ALIGN = 4096              # O_DIRECT wants aligned memory, offsets and lengths
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_staging = threading.local()
_direct_refused: set[int] = set()  # devices whose filesystem refused O_DIRECT


def _write_temp(folder: str, parts: list) -> tuple[str, str, int]:
    """A temporary file in ``folder`` (made if missing) holding ``parts``: (path, SHA-256,
    size). Not yet durable: ``WriteBatch.publish`` makes the whole batch durable at once."""
    device = _ensure_folder(folder)
    size = sum(len(part) for part in parts)
    direct = bool(_O_DIRECT) and size >= DIRECT_FROM_BYTES and device not in _direct_refused
    try:
        fd, temp, direct = _new_temporary(folder, direct, device)
    except OSError:
        _known_folders.pop(folder, None)  # gone? the next batch checks and makes it again
        raise
    try:
        digest, size = _write_contents(fd, parts, direct, device)
    except BaseException:
        _known_folders.pop(folder, None)
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    os.close(fd)
    return temp, digest, size


def _new_temporary(folder: str, direct: bool, device: int) -> tuple[int, str, bool]:
    """``_create_temporary``, making ``folder`` again if it was deleted since this process
    made it (a withdrawal, a study removal or a sweep, here or in another process, removes a
    patient's folders; the patient reinstated and sent again writes into them)."""
    try:
        return _create_temporary(folder, direct, device)
    except FileNotFoundError:
        _known_folders.pop(folder, None)
        return _create_temporary(folder, direct, _ensure_folder(folder))


_temporary_numbers = itertools.count()


def _create_temporary(folder: str, direct: bool = False,
                      device: int | None = None) -> tuple[int, str, bool]:
    """A new empty file in ``folder`` for one object, in one ``open``: (fd, path, direct).
    Its mode is 0644 less the umask, as the object it becomes will have. Opened for direct
    writes if asked, unless the filesystem (on ``device``) refuses them, as tmpfs does: that
    is remembered."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        temp = f"{folder}/{TEMP_PREFIX}{_writer_name()}-{next(_temporary_numbers)}"
        try:
            return os.open(temp, flags | (_O_DIRECT if direct else 0), 0o644), temp, direct
        except FileExistsError:
            continue  # (not expected: the name is this process's own) take the next number
        except OSError as exc:
            if not (direct and exc.errno == errno.EINVAL):
                raise
            _direct_refused.add(device)
            direct = False


def _write_contents(fd: int, parts: list, direct: bool, device: int) -> tuple[str, int]:
    """Write ``parts`` to the empty file ``fd`` (opened with O_DIRECT if ``direct``): (SHA-256,
    size). A direct write the filesystem refuses midway is done again through the page cache."""
    if direct:
        try:
            return _write_direct(fd, parts)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: alignment refused; start again buffered
                raise
            _direct_refused.add(device)
            _buffered(fd)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest(), write_all(fd, parts)


def _buffered(fd: int) -> None:
    """Turn O_DIRECT off for ``fd`` (the other flags F_SETFL sets are never ours)."""
    fcntl.fcntl(fd, fcntl.F_SETFL, 0)


def _write_direct(fd: int, parts: list) -> tuple[str, int]:
    """Write ``parts`` with O_DIRECT through this thread's aligned staging buffer, hashing
    each chunk while it is hot: (SHA-256, size).

    Why: a warehouse object is written once and seldom read back soon. Copying it into fresh
    page-cache pages, which the kernel then writes back, cost about three times the CPU of
    copying it into a reused buffer the disk reads directly (docs/benchmarks.md). The whole
    blocks go directly; the last partial block goes through the page cache, at its offset:
    padding it and cutting the file back instead made the kernel read that block back from
    the disk, 3-4 ms a file. Durability is unchanged: ``WriteBatch.publish`` syncs the
    filesystem, which writes that block and flushes the disk's cache and sizes."""
    staging = getattr(_staging, "buffer", None)
    if staging is None:
        staging = _staging.buffer = mmap.mmap(-1, DIRECT_CHUNK)  # page-aligned
    digest = hashlib.sha256()
    view = memoryview(staging)
    try:
        filled = size = 0
        for part in parts:
            source = memoryview(part).cast("B")
            while len(source):
                take = min(len(source), DIRECT_CHUNK - filled)
                _copy(view[filled:filled + take], source[:take])
                source, filled = source[take:], filled + take
                if filled == DIRECT_CHUNK:
                    digest.update(view)
                    size += write_all(fd, [view])
                    filled = 0
        if filled:
            digest.update(view[:filled])
            whole = filled - filled % DIRECT_ALIGN
            if whole:
                size += write_all(fd, [view[:whole]])
            if whole < filled:
                _buffered(fd)
                size += write_all(fd, [view[whole:filled]])
        return digest.hexdigest(), size
    finally:
        view.release()


def _copy(target: memoryview, source: memoryview) -> None:
    """``target[:] = source`` without holding the GIL (numpy lets it go for a copy; a
    memoryview's slice assignment does not): staging an import's 2.5 GB held it for about
    0.8 s, which the de-identifying thread spent waiting."""
    numpy.copyto(numpy.frombuffer(target, numpy.uint8), numpy.frombuffer(source, numpy.uint8))


def _ensure_folder(folder: str) -> int:
    """Make ``folder`` if missing, and return its device; a folder met for the first time by
    this process is swept of temporaries left by a killed process. Runs on the writer
    threads (it may wait on disk)."""
    device = _known_folders.get(folder)
    if device is not None:
        return device
    try:
        device = os.stat(folder).st_dev
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        device = os.stat(folder).st_dev
    else:
        _remove_stale_temporaries(folder)
    if len(_known_folders) > 20000:  # bounded: a long-running node sees many series
        _known_folders.clear()
    _known_folders[folder] = device
    return device


_libc = None


def _linux_libc():
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _rename_into_place(source: str, target: str) -> bool:
    """Rename ``source`` to ``target``, replacing any object there; whether one was there.

    One ``renameat2(RENAME_NOREPLACE)`` says so at no extra cost (a failed batch must know
    which objects it added, never to delete one stored before it); where the kernel or the
    filesystem lacks it, one ``stat`` first."""
    renameat2 = getattr(_linux_libc(), "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target),
                     _RENAME_NOREPLACE) == 0:
            return False
        error = ctypes.get_errno()
        if error not in (errno.EEXIST, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(error, os.strerror(error), target)
        if error == errno.EEXIST:
            os.replace(source, target)
            return True
    existed = os.path.lexists(target)
    os.replace(source, target)
    return existed


_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` to the disk now, without
    waiting (``sync_file_range``): a later ``fdatasync`` then waits only for what is left.
    Nothing where the call is missing (not Linux); not a durability promise on its own."""
    libc = _linux_libc()
    if libc is not None:
        libc.sync_file_range(ctypes.c_int(fd), ctypes.c_longlong(offset),
                             ctypes.c_longlong(length), ctypes.c_uint(_SYNC_FILE_RANGE_WRITE))


def sync_filesystem(path: str) -> None:
    """Make every write to the filesystem holding ``path`` durable: data, new files, renames.

    One ``syncfs`` for a whole batch costs the disk one journal commit, where an fsync per
    object and per folder cost one each (measured here: ~1 GB/s against ~250 MB/s). Where
    ``syncfs`` is missing (not Linux), ``sync`` does the same for every filesystem."""
    libc = _linux_libc()
    if libc is not None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"syncfs failed: {os.strerror(error)}")
        finally:
            os.close(fd)
    else:
        os.sync()


class WriteBatch:
    """Objects written together and made durable once (see the module docstring).

    ``put(key, data)`` starts writing at once (``data`` is bytes or a sequence of buffers,
    written without joining them); ``digests()`` waits for every write; ``publish(keys)``
    syncs them, renames them to their keys (all, or the given ones) and syncs the names,
    after which the objects survive a crash; ``discard()`` removes whatever was not
    published. On S3 nothing is sent before ``publish`` (one concurrent PUT per object).
    """

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self._pending: dict[str, Future | list] = {}
        self._journaled: set[str] = set()  # local: the folders written, in the journal
        self.published: list[str] = []  # local: keys renamed into place by publish()
        self.replaced: set[str] = set()  # local: those of them that replaced an object

    def put(self, key: str, data: Buffers) -> None:
        path = self.warehouse.path(key)
        parts = _parts(data)
        if key in self._pending:
            raise StorageError(f"{key}: written twice in one batch")
        if not self.warehouse.is_local:
            self._pending[key] = parts
            return
        folder = os.path.dirname(path)
        journaled = _folder_in(self.warehouse.root, folder)
        if journaled not in self._journaled:  # noted before its first temporary there
            _journal_enter(self.warehouse.root, journaled)
            self._journaled.add(journaled)
        self._pending[key] = _writer_pool().submit(_write_temp, folder, parts)

    def digests(self) -> dict[str, str]:
        """Wait for every write; key -> SHA-256. The first failure is raised."""
        if not self.warehouse.is_local:
            return {k: hashlib.sha256(b"".join(p)).hexdigest() if len(p) > 1
                    else hashlib.sha256(p[0] if p else b"").hexdigest()
                    for k, p in self._pending.items()}
        return {k: f.result()[1] for k, f in self._pending.items()}

    def publish(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """Make the objects visible and durable; key -> SHA-256 of those published."""
        keys = list(self._pending) if keys is None else list(keys)
        if not self.warehouse.is_local:
            items = {self.warehouse.path(k): b"".join(self._pending[k]) for k in keys}
            if items:
                self.warehouse.fs.pipe(items)
                self.warehouse._check_sizes({k: len(items[self.warehouse.path(k)]) for k in keys})
            done = {k: hashlib.sha256(items[self.warehouse.path(k)]).hexdigest() for k in keys}
            for k in keys:
                self._pending.pop(k)
            return done
        written = {key: self._pending[key].result() for key in keys}
        if not written:
            return {}
        # Data first, then names: a crash can never leave a named object with missing bytes.
        sync_filesystem(self.warehouse.root)
        for key, (temp, _digest, _size) in written.items():
            if _rename_into_place(temp, self.warehouse.path(key)):
                self.replaced.add(key)
            self.published.append(key)
            del self._pending[key]
        try:
            sync_filesystem(self.warehouse.root)
        except BaseException:
            for key in written:  # not durable, so not published: the caller records none
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.warehouse.path(key))
            raise
        if not self._pending:
            self._leave_journal()
        return {key: digest for key, (_temp, digest, _size) in written.items()}

    def discard(self) -> None:
        """Remove every temporary not published (after waiting for its write)."""
        pending, self._pending = self._pending, {}
        for value in pending.values():
            if isinstance(value, Future):
                try:
                    temp = value.result()[0]
                except Exception:  # noqa: BLE001 - a failed write already removed its file
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        self._leave_journal()

    def _leave_journal(self) -> None:
        """No temporary of this batch is left: its folders leave the journal."""
        if self._journaled:
            journaled, self._journaled = self._journaled, set()
            _journal_leave(self.warehouse.root, journaled)


STALE_TEMPORARY = 3600  # seconds: no live write keeps a temporary that long


def _remove_stale_temporaries(folder: str) -> None:
    """Temporaries in ``folder`` older than any write takes (``STALE_TEMPORARY``), named by
    no journal (those of a writer before journals, or a journal lost): removed when this
    process first writes to the folder. A killed writer's journal has its temporaries
    removed sooner, and wherever they are (``_sweep_dead_writers``)."""
    limit = time.time() - STALE_TEMPORARY
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(TEMP_PREFIX)]
        for entry in entries:
            if entry.stat(follow_symlinks=False).st_mtime < limit:
                os.unlink(entry.path)
    except OSError:  # another process removed it first, or the folder went away: harmless
        pass


# -- the writers' journals (local) --------------------------------------------------------
# A process killed mid-batch (kill -9, an OOM kill, a power cut) leaves its temporaries behind,
# invisible but taking space (up to two import batches: 128 MB). A re-run skips what is
# stored, so it may never write into those folders again: the folders have to be found.
# Each writing process keeps a journal, ``<root>/.nccid-writing/<writer>``, naming the
# folders where it has temporaries (``.tmp-<writer>-<n>``) and locked (``flock``) for as long
# as it runs: the kernel releases the lock when the process dies, however, and a lock cannot
# be inherited by a process reusing its pid. A process's first write (and an import's start,
# a withdrawal) removes the temporaries of every journal nobody locks, and the journal. One
# of another host (whose lock a shared filesystem may not pass on) waits until it and its
# temporaries are older than ``STALE_TEMPORARY``. The journal costs a small write per folder a batch enters
# and one truncation per batch, in the page cache (a power cut loses the temporaries' data
# as well; ``_remove_stale_temporaries`` is the last resort).
WRITING_FOLDER = ".nccid-writing"
_journal_lock = threading.Lock()
_journals: dict[str, _Journal] = {}  # local root -> this process's journal there
_swept_roots: set[str] = set()  # roots whose dead writers this process swept
_writer: str | None = None
_WRITER_NAME = re.compile(r"^[0-9a-f]{8}-[0-9]+-[0-9a-f]{12}$")


def _writer_name() -> str:
    """This process's name on its temporaries and journals: host, pid and a random part (a
    later process with the same pid is another writer)."""
    global _writer
    if _writer is None:
        _writer = f"{_HOST}-{os.getpid()}-{os.urandom(6).hex()}"
    return _writer


class _Journal:
    """This process's journal under one local root: each folder where it may have a
    temporary, one per line (relative to the root, ``.`` for the root itself), counted by
    the batches and writes open there; locked while the process lives."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = f"{root}/{WRITING_FOLDER}/{_writer_name()}"
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        _try_lock(self.fd)  # where locks are not kept, sweepers go by age
        self.folders: dict[str, int] = {}
        self.length = 0

    def enter(self, folder: str) -> None:
        if folder not in self.folders:
            line = f"{folder}\n".encode()
            os.pwrite(self.fd, line, self.length)  # (not O_APPEND: pwrite would ignore offsets)
            self.length += len(line)
            self.folders[folder] = 0
        self.folders[folder] += 1

    def leave(self, folders: Iterable[str]) -> None:
        before = len(self.folders)
        for folder in folders:
            if self.folders.get(folder, 0) > 1:
                self.folders[folder] -= 1
            else:
                self.folders.pop(folder, None)
        if len(self.folders) == before:
            return
        # Rewritten from the start, then cut: at every moment it names each open folder.
        lines = "".join(f"{folder}\n" for folder in self.folders).encode()
        if lines:
            os.pwrite(self.fd, lines, 0)
        if len(lines) != self.length:
            os.ftruncate(self.fd, len(lines))
        self.length = len(lines)

    def swept(self) -> bool:
        """Removed by a sweeper (of another host, by age, while this process sat idle)."""
        return os.fstat(self.fd).st_nlink == 0

    def close(self, *, remove: bool) -> None:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self.fd)


def _folder_in(root: str, folder: str) -> str:
    """``folder`` (a path under ``root``) as a journal names it."""
    return folder[len(root) + 1:] or "."


def _journal_enter(root: str, folder: str) -> None:
    """Note ``folder`` before writing a temporary there (the first time: sweep dead writers)."""
    with _journal_lock:
        journal = _journals.get(root)
        if journal is not None and not journal.folders and journal.swept():
            journal.close(remove=False)  # swept by another host, this process idle: anew
            del _journals[root]
            journal = None
        if journal is None:
            journal = _open_journal(root)
        journal.enter(folder)


def _journal_leave(root: str, folders: Iterable[str]) -> None:
    """No temporary of that batch or write is left in ``folders``."""
    with _journal_lock:
        journal = _journals.get(root)
        if journal is not None:  # (not in a forked child: its parent's batch)
            journal.leave(folders)


def _open_journal(root: str) -> _Journal:
    for other, journal in list(_journals.items()):  # one open file per root in use (tests
        if not journal.folders:                      # make a root each)
            journal.close(remove=True)
            del _journals[other]
    if root not in _swept_roots:
        _swept_roots.add(root)
        _sweep_dead_writers(root)
    journal = _journals[root] = _Journal(root)
    return journal


def _sweep_dead_writers(root: str) -> int:
    """Remove the temporaries (and the journals) of the writers under ``root`` that died;
    how many temporaries. Never an object, nor a live writer's temporary."""
    folder = f"{root}/{WRITING_FOLDER}"
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = sum(_sweep_journal(root, f"{folder}/{name}") for name in names
                  if _WRITER_NAME.match(name) and name != _writer_name())
    if removed:
        log.info("removed %d temporary file(s) left by killed processes in the warehouse at %s",
                 removed, root)
    return removed


def _sweep_journal(root: str, path: str) -> int:
    """A sweep never fails a write: what it cannot remove (another user's files, a folder
    gone) waits for the next."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # swept meanwhile, or not ours to read
        return 0
    try:
        return _sweep_writer(root, path, fd)
    except OSError as exc:
        log.debug("could not sweep %s: %s", path, exc)
        return 0
    finally:
        os.close(fd)  # (and its lock)


def _sweep_writer(root: str, path: str, fd: int) -> int:
    """Sweep the journal at ``path`` (open as ``fd``) unless its writer runs."""
    locked, writer = _try_lock(fd, fcntl.LOCK_SH), os.path.basename(path)
    here = writer.startswith(f"{_HOST}-")
    if locked is False or (locked is None and here and _pid_runs(writer)):
        return 0  # its writer runs
    older_than = None if here else time.time() - STALE_TEMPORARY
    if older_than is not None and os.fstat(fd).st_mtime >= older_than:
        return 0  # another host's writer (its lock may not reach here) wrote lately
    removed = kept = 0
    for folder in _journal_folders(fd):
        gone, left = _remove_temporaries_of(root, folder, writer, older_than)
        removed, kept = removed + gone, kept + left
    if not kept:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return removed


def _try_lock(fd: int, how: int = fcntl.LOCK_EX) -> bool | None:
    """Lock ``fd`` for this process (a writer holds LOCK_EX, a sweeper probes with LOCK_SH):
    True, or False if another process holds it, or None where the filesystem keeps no locks."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP: an NFS mount without locking
        return None
    return True


def _pid_runs(writer: str) -> bool:
    """Where locks are not kept: whether the writer's pid runs (on this host)."""
    pid = writer.split("-")[1]
    return pid.isdigit() and pid_runs(int(pid))


def _journal_folders(fd: int) -> set[str]:
    text = os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")
    return {line for line in text.split("\n") if line}


def _remove_temporaries_of(root: str, folder: str, writer: str,
                           older_than: float | None) -> tuple[int, int]:
    """Remove ``writer``'s temporaries in ``folder`` (relative to ``root``), only those older
    than ``older_than`` if given: (removed, kept)."""
    if folder != ".":
        try:
            check_key(folder)
        except StorageError:  # not a folder a journal names (a line cut by a crash)
            return 0, 0
    prefix = f"{TEMP_PREFIX}{writer}-"
    removed = kept = 0
    try:
        with os.scandir(root if folder == "." else f"{root}/{folder}") as entries:
            found = [entry for entry in entries if entry.name.startswith(prefix)]
    except (FileNotFoundError, NotADirectoryError):  # removed since (a withdrawal)
        return 0, 0
    for entry in found:
        try:
            if older_than is not None and entry.stat(follow_symlinks=False).st_mtime >= older_than:
                kept += 1
                continue
            os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            continue
    return removed, kept


def _close_journals() -> None:
    """At exit: the journals with no open write are removed (others stay for the sweepers)."""
    with _journal_lock:
        for journal in _journals.values():
            journal.close(remove=not journal.folders)
        _journals.clear()


def _forget_journals_in_child() -> None:
    """A forked child is another writer: it closes its copies of the parent's journals (the
    locks are the parent's to hold) and names itself afresh."""
    global _journal_lock, _writer
    _journal_lock = threading.Lock()
    for journal in _journals.values():
        with contextlib.suppress(OSError):
            os.close(journal.fd)
    _journals.clear()
    _writer = None


atexit.register(_close_journals)
os.register_at_fork(after_in_child=_forget_journals_in_child)


def _fsync_dir(folder: str) -> None:
    """Make the rename durable (POSIX): fsync the directory entry."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
