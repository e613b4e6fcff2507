"""Object storage for the warehouse over fsspec: a local folder or any S3-compatible store.

Pure library (no Django). Keys are ``/``-separated paths relative to the warehouse root, the
same on every backend. Writes are atomic: a reader sees the whole object or nothing.
- local: write to a hidden temporary name in the same folder, fsync, rename (and fsync the folder);
- S3: a single PUT (or a multipart upload, completed in one request) is atomic by itself.
Every write returns the SHA-256 of what was written and checks the stored size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import fsspec

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


def s3_filesystem_options(options: dict) -> dict:
    """s3fs keyword arguments from our storage options (credentials default to AWS_* env)."""
    opts = dict(options)
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
            self.fs = fsspec.filesystem("s3", skip_instance_cache=True,
                                        **s3_filesystem_options(self.options))
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
        """Write several small objects; on S3 the PUTs run concurrently. Returns key -> SHA-256."""
        if self.is_local or len(items) < 2:
            return {key: self.write_atomic(key, data) for key, data in items.items()}
        self.fs.pipe({self.path(k): v for k, v in items.items()})
        return {key: hashlib.sha256(data).hexdigest() for key, data in items.items()}

    def _local_commit(self, path: str, writer) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                writer(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException:
            # An error (or an interrupt) before the rename leaves nothing visible behind.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_dir(folder)

    def _check_size(self, key: str, expected: int) -> None:
        actual = self.size(key)
        if actual != expected:
            raise StorageError(f"{key}: stored {actual} bytes, expected {expected}")

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
        return bool(self.fs.isfile(self.path(key)))

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
        for path in paths:
            key = self._key_of(path.rstrip("/"))
            if not any(part.startswith(TEMP_PREFIX) for part in key.split("/")):
                yield key

    def delete(self, key: str) -> None:
        path = self.path(key)
        if self.is_local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        elif self.fs.exists(path):
            self.fs.rm_file(path)

    def download(self, key: str, local_path: str | Path) -> None:
        """Copy an object to a local file (written under a temporary name, then renamed)."""
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        temp = local_path.with_name(TEMP_PREFIX + local_path.name)
        with self.open(key) as source, open(temp, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK)
        os.replace(temp, local_path)

    def local_path(self, key: str) -> Path | None:
        """The object's file on a local backend (for zero-copy readers), else None."""
        return Path(self.path(key)) if self.is_local else None


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
