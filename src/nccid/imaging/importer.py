"""Import DICOM files from folders (recursively), single files and .zip archives.

Each file goes through the intake pipeline exactly like a file received by the node, in
batches (``intake.prepare_many`` then ``finish_many``: at most ``BATCH_FILES`` files or
``BATCH_BYTES`` bytes) so that a batch is made durable and recorded at once, on another thread
while the next batch is de-identified. Zip members are read into memory one at
a time (never extracted to disk). Re-running an import is cheap: a file whose keyed SOP
Instance UID is already stored, pending or held is skipped before it is de-identified; a
process killed mid-batch loses only that batch, which the re-run stores.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import threading
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .intake import close_thread_connections, finish_many, long_run_collector, prepare_many
from .outcome import IngestOutcome, IngestStatus

MAX_FILE_BYTES = 4 * 1024**3  # a single DICOM file larger than this is refused, not read
MAX_MEMBER_BYTES = 128 * 1024**2  # a zip member is read into memory: bigger ones are refused
BATCH_FILES = 32               # files made durable and committed together
BATCH_BYTES = 64 * 1024**2     # ... or fewer, when they are big (bounds memory)
READ_AHEAD = 16                # files read ahead ...
READ_AHEAD_BYTES = 48 * 1024**2  # ... or fewer, when they are big (bounds memory)
READERS = 2                    # threads reading ahead
_archives_lock = threading.Lock()
MAP_FROM_BYTES = 256 * 1024    # bigger files are memory-mapped rather than read
_NOATIME = getattr(os, "O_NOATIME", 0)
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", 0)


@dataclass
class ImportSummary:
    counts: Counter = field(default_factory=Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    bytes: int = 0

    def add(self, name: str, outcome: IngestOutcome, size: int) -> None:
        self.counts[outcome.status.value] += 1
        self.bytes += size
        if outcome.status is IngestStatus.REJECTED:
            self.rejected.append((name, outcome.reason))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Source:
    """One file to import: a path on disk, or a member of a zip archive."""

    name: str
    size: int
    path: Path
    member: zipfile.ZipInfo | None = None  # by entry, not name: two entries may share a name

    def read(self, archives: dict[Path, zipfile.ZipFile]) -> bytes | mmap.mmap:
        if self.member is None:
            return _map(self.path) if self.size >= MAP_FROM_BYTES else self.path.read_bytes()
        with _archives_lock:  # ZipFile reads are locked inside; opening one is not
            if self.path not in archives:
                archives[self.path] = zipfile.ZipFile(self.path)
            archive = archives[self.path]
        return archive.read(self.member)


def _map(path: Path) -> mmap.mmap:
    """The file mapped read-only: no copy into the heap, and the pixel data goes from the
    page cache to the warehouse file directly. The reader thread asks the kernel to read the
    file ahead (without the GIL) rather than mapping it with MAP_POPULATE: Python's ``mmap``
    holds the GIL while the kernel populates the mapping, about 0.6 s of an import of
    2.5 GB, during which the de-identifying thread waited."""
    fd = _open_quietly(path)
    try:
        if _WILLNEED:
            os.posix_fadvise(fd, 0, 0, _WILLNEED)
        return mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def _open_quietly(path: Path) -> int:
    """Open for reading without updating the access time where we may (our own files): a
    first read of a new file otherwise writes its inode, which waits behind the warehouse's
    filesystem syncs when source and warehouse share a disk."""
    try:
        return os.open(path, os.O_RDONLY | _NOATIME)
    except PermissionError:  # O_NOATIME needs the file's owner (or root)
        return os.open(path, os.O_RDONLY)


def _release(data) -> None:
    """Unmap a file once its batch is done (or leave it to the collector if still in use)."""
    if isinstance(data, mmap.mmap):
        with contextlib.suppress(BufferError):
            data.close()


def _walk(root: Path, problems: list[tuple[str, str]]) -> Iterator[Path]:
    """Every file under ``root``, following links to folders (each folder once, so a link
    back up cannot loop); a folder that cannot be listed is reported."""
    seen: set[tuple[int, int]] = set()

    def unreadable(error: OSError) -> None:
        problems.append((str(error.filename), f"unreadable folder ({type(error).__name__})"))

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        try:
            status = os.stat(folder)
        except OSError as exc:
            unreadable(exc)
            dirs.clear()
            continue
        if (status.st_dev, status.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


# Not images: the index file of a DICOM disc is skipped like hidden files.
SKIPPED_NAMES = frozenset({"DICOMDIR"})


def _expand(path: Path) -> Iterator[Source | tuple[str, str]]:
    try:
        status = path.stat()  # follows a link to what it names
    except FileNotFoundError:
        yield (str(path), "broken symbolic link" if path.is_symlink() else "no such file")
        return
    except OSError as exc:
        yield (str(path), f"unreadable ({type(exc).__name__})")
        return
    if not stat.S_ISREG(status.st_mode):
        yield (str(path), "not a regular file (a pipe, socket or device): not read")
        return
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        yield from _expand_zip(path, status.st_size)
        return
    yield Source(str(path), status.st_size, path)


def _expand_zip(path: Path, size: int) -> Iterator[Source | tuple[str, str]]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield (str(path), f"unreadable zip archive ({type(exc).__name__})")
        return
    if infos and min(info.header_offset for info in infos) > 0:
        # Its directory does not start at its first bytes: a damaged archive whose last
        # directory found belongs to a zip stored inside it, or a self-extracting one.
        yield (str(path), "damaged zip archive (its directory does not cover the whole file)")
        return
    for info in infos:
        name = f"{path}!{info.filename}"
        if Path(info.filename).name.upper() in SKIPPED_NAMES:
            continue
        if info.filename.lower().endswith(".zip"):
            yield (name, "a zip archive inside a zip archive: extract it and import the folder")
        elif info.file_size > MAX_MEMBER_BYTES:
            yield (name, f"zip member of {info.file_size:,} bytes, over the "
                         f"{MAX_MEMBER_BYTES:,} read into memory: extract the archive and "
                         "import the folder")
        else:
            yield Source(name, info.file_size, path, info)


def collect(paths: list[Path]) -> tuple[list[Source], list[tuple[str, str]]]:
    """Every file to import under ``paths``, plus (path, reason) for paths that cannot be read."""
    sources: list[Source] = []
    problems: list[tuple[str, str]] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            problems.append((str(root), "no such file or folder"))
            continue
        files = _walk(root, problems) if root.is_dir() else [root]
        for file in files:
            if file.name.startswith(".") or file.name.upper() in SKIPPED_NAMES:
                continue
            for item in _expand(file):
                (sources if isinstance(item, Source) else problems).append(item)
    return sources, problems


def import_sources(sources: list[Source], site, source: str = "import",
                   progress: Callable[[Source], None] | None = None) -> ImportSummary:
    """Ingest each source in turn; a file that cannot be read is reported, never fatal."""
    summary = ImportSummary()
    archives: dict[Path, zipfile.ZipFile] = {}
    try:
        with long_run_collector():
            _import_each(sources, site, source, progress, summary, archives)
    finally:
        for archive in archives.values():
            archive.close()
    return summary


def _import_each(sources, site, source, progress, summary, archives) -> None:
    batch: list[tuple[Source, bytes]] = []
    held = 0
    with _Committer(site, source, progress, summary) as committer, \
            contextlib.closing(_read_ahead(sources, archives)) as reads:  # reader done on exit
        for item, data in reads:
            if isinstance(data, IngestOutcome):
                summary.add(item.name, data, 0)
                _advance(progress, item)
                continue
            batch.append((item, data))
            held += len(data)
            if len(batch) >= BATCH_FILES or held >= BATCH_BYTES:
                committer.submit(batch)
                batch, held = [], 0
        committer.submit(batch)


class _Committer:
    """Batches de-identified here and finished (made durable, recorded) on one other thread,
    so that the disk syncs one batch while the next is de-identified. One batch finishes at
    a time, in order; a batch is prepared only once the one before the last has finished
    (at most two batches in memory)."""

    def __init__(self, site, source, progress, summary) -> None:
        from django.db import connection

        self.site, self.source, self.progress, self.summary = site, source, progress, summary
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="nccid-commit")
        self._finishing: tuple[list, Future] | None = None
        # Inside the caller's transaction another connection would not see its rows: finish
        # on this thread then, within that transaction.
        self._inline = connection.in_atomic_block

    def __enter__(self) -> _Committer:
        return self

    def submit(self, batch: list) -> None:
        if not batch:
            return
        datas = [data for _, data in batch]
        prepared = prepare_many(datas, self.site, self.source)
        self._collect()
        sized = [(item, len(data)) for item, data in batch]
        if self._inline:
            done: Future = Future()
            done.set_result(_finish_and_release(prepared, datas))
            self._finishing = (sized, done)
        else:
            self._finishing = (sized, self._thread.submit(_finish_and_release, prepared, datas))

    def _collect(self) -> None:
        if self._finishing is None:
            return
        sized, future = self._finishing
        self._finishing = None
        for (item, size), outcome in zip(sized, future.result(), strict=True):
            self.summary.add(item.name, outcome, size)
            _advance(self.progress, item)

    def __exit__(self, *exc_info) -> None:
        try:
            self._collect()  # also after an interrupt: what was prepared is finished, once
        finally:
            self._thread.submit(close_thread_connections).result()
            self._thread.shutdown()


def _finish_and_release(prepared, datas: list) -> list[IngestOutcome]:
    """``finish_many``, then the batch's files unmapped (on the finishing thread: unmapping
    big files is not free, and the de-identifying thread is the busy one)."""
    try:
        return finish_many(prepared)
    finally:
        for data in datas:
            _release(data)


def _read_ahead(sources, archives, window: int = READ_AHEAD) -> Iterator[tuple[Source, object]]:
    """(source, bytes or a REJECTED outcome) in order; the next files (at most ``window``, or
    ``READ_AHEAD_BYTES``) are read by two threads while the current ones are de-identified
    (reads release the GIL)."""
    with ThreadPoolExecutor(READERS, thread_name_prefix="nccid-read") as reader:
        queue: deque = deque()
        ahead = 0
        remaining = iter(sources)
        following = next(remaining, None)
        while following is not None or queue:
            while following is not None and (not queue or (len(queue) < window
                                                            and ahead < READ_AHEAD_BYTES)):
                queue.append((following, reader.submit(_read_one, following, archives)))
                ahead += following.size
                following = next(remaining, None)
            item, future = queue.popleft()
            ahead -= item.size
            yield item, future.result()


def _read_one(item: Source, archives) -> bytes | IngestOutcome:
    """The file's bytes, or why it could not be read: a read that fails, whatever the cause
    (a damaged or encrypted zip member, a file that vanished), costs that file only."""
    if item.size > MAX_FILE_BYTES:
        return IngestOutcome(IngestStatus.REJECTED, "file too large")
    try:
        return item.read(archives)
    except RuntimeError as exc:  # zipfile's word for a member it needs a password for
        reason = "encrypted zip member" if "encrypt" in str(exc) else f"unreadable ({type(exc).__name__})"
        return IngestOutcome(IngestStatus.REJECTED, reason)
    except (zlib.error, zipfile.BadZipFile, EOFError) as exc:
        why = {zlib.error: "corrupt compressed data", EOFError: "cut short"}.get(
            type(exc), "bad checksum or header")
        return IngestOutcome(IngestStatus.REJECTED, f"damaged zip member ({why})")
    except Exception as exc:  # noqa: BLE001 - one unreadable file never stops an import
        return IngestOutcome(IngestStatus.REJECTED, f"unreadable ({type(exc).__name__})")


def _advance(progress, item) -> None:
    if progress is not None:
        progress(item)


def import_paths(paths: list[Path], site, source: str = "import",
                 progress: Callable[[Source], None] | None = None) -> ImportSummary:
    sources, problems = collect(paths)
    summary = import_sources(sources, site, source, progress)
    for name, reason in problems:
        summary.add(name, IngestOutcome(IngestStatus.REJECTED, reason), 0)
    return summary
