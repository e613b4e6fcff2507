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
import re
import stat
import struct
import threading
import tomllib
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
MAX_ARCHIVE_BYTES = 64 * 1024**3  # an archive declaring more, uncompressed, is refused whole
MAX_MEMBER_RATIO = 200         # a member inflating more than this many times is refused ...
RATIO_FROM_BYTES = 1024**2     # ... once over this size (an image compresses 1-20:1 at most)
BATCH_FILES = 32               # files made durable and committed together
BATCH_BYTES = 64 * 1024**2     # ... or fewer, when they are big (bounds memory)
READ_AHEAD = 16                # files read ahead ...
READ_AHEAD_BYTES = 48 * 1024**2  # ... or fewer, when they are big (bounds memory)
READERS = 2                    # threads reading ahead
_archives_lock = threading.Lock()
MAP_FROM_BYTES = 256 * 1024    # bigger files are memory-mapped rather than read (local disks)
CHANGED = "changed while being imported (import it again once it is complete)"
_NOATIME = getattr(os, "O_NOATIME", 0)
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", 0)


@dataclass
class ImportSummary:
    counts: Counter = field(default_factory=Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    bytes: int = 0
    # The outage that stopped the import (``IngestOutcome.outage``), if one did: the files
    # without an outcome are not refused, a re-run takes them.
    stopped: str = ""

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
    mappable: bool = False  # big, and on a local disk: memory-mapped rather than read

    def read(self, archives: dict[Path, zipfile.ZipFile]) -> bytes | mmap.mmap:
        if self.member is None:
            return _map(self.path, self.size) if self.mappable else self.path.read_bytes()
        with _archives_lock:  # ZipFile reads are locked inside; opening one is not
            if self.path not in archives:
                archives[self.path] = zipfile.ZipFile(self.path)
            archive = archives[self.path]
        return archive.read(self.member)


class ChangedWhileImported(Exception):
    """A mapped file's size is not the one it had when collected: touching the pages it lost
    would kill the process (SIGBUS), so it is not used."""


def _map(path: Path, expected_size: int) -> mmap.mmap:
    """The file mapped read-only: no copy into the heap, and the pixel data goes from the
    page cache to the warehouse file directly. The reader thread asks the kernel to read the
    file ahead (without the GIL) rather than mapping it with MAP_POPULATE: Python's ``mmap``
    holds the GIL while the kernel populates the mapping, about 0.6 s of an import of
    2.5 GB, during which the de-identifying thread waited."""
    fd = _open_quietly(path)
    try:
        if _WILLNEED:
            os.posix_fadvise(fd, 0, 0, _WILLNEED)
        mapped = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    if _changed(mapped, expected_size):
        mapped.close()
        raise ChangedWhileImported
    return mapped


def _changed(mapped: mmap.mmap, expected_size: int) -> bool:
    """Whether the file behind ``mapped`` is no longer ``expected_size`` bytes (``size()`` is
    an fstat of the descriptor the map keeps: the very file mapped, even if renamed over)."""
    return len(mapped) != expected_size or mapped.size() != expected_size


class _Mounts:
    """The mount table (/proc/self/mountinfo), read once per collect: which filesystem type
    holds a file, to map files only where a read error is unlikely (a local disk)."""

    def __init__(self, text: str) -> None:
        self.by_device: dict[int, str] = {}
        self.by_point: list[tuple[str, str]] = []
        for line in text.splitlines():
            fields = line.split()
            if "-" not in fields[5:]:
                continue
            major, _, minor = fields[2].partition(":")
            kind = fields[fields.index("-", 5) + 1]
            self.by_device[os.makedev(int(major), int(minor))] = kind
            self.by_point.append((_unescape(fields[4]), kind))

    @classmethod
    def read(cls) -> _Mounts:
        try:
            return cls(Path("/proc/self/mountinfo").read_text())
        except OSError:  # no /proc: nothing is known to be local, every file is read
            return cls("")

    def filesystem(self, path: Path, device: int) -> str | None:
        """By the file's device; else (a btrfs subvolume has a device of its own) by the
        longest mount point above it, the last mounted winning; None if neither is known."""
        if device in self.by_device:
            return self.by_device[device]
        real, found, longest = os.path.realpath(path), None, -1
        for point, kind in self.by_point:
            under = real == point or real.startswith(point.rstrip("/") + "/")
            if under and len(point) >= longest:
                found, longest = kind, len(point)
        return found

    def local(self, path: Path, device: int) -> bool:
        kind = self.filesystem(path, device)
        return kind is not None and kind not in _READ_NOT_MAPPED and not kind.startswith(
            _READ_NOT_MAPPED_PREFIXES)


def _unescape(field_text: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field_text)


def _filesystem_table() -> tuple[frozenset[str], tuple[str, ...]]:
    table = tomllib.loads(Path(__file__).with_name("filesystems.toml").read_text())
    return frozenset(table["network"] + table["removable"]), tuple(table["prefixes"])


_READ_NOT_MAPPED, _READ_NOT_MAPPED_PREFIXES = _filesystem_table()


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


def _expand(path: Path, mounts: _Mounts) -> Iterator[Source | tuple[str, str]]:
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
    mappable = status.st_size >= MAP_FROM_BYTES and mounts.local(path, status.st_dev)
    yield Source(str(path), status.st_size, path, mappable=mappable)


def _expand_zip(path: Path, size: int) -> Iterator[Source | tuple[str, str]]:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            overlapping = _overlapping_entry(path, entries, archive.start_dir)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield (str(path), f"unreadable zip archive ({type(exc).__name__})")
        return
    infos = [info for info in entries if not info.is_dir()]
    # (folder entries count: `zip -r` and most tools write the top folder's entry first)
    if entries and min(info.header_offset for info in entries) > 0:
        # Its directory does not start at its first bytes: a damaged archive whose last
        # directory found belongs to a zip stored inside it, or a self-extracting one.
        yield (str(path), "damaged zip archive (its directory does not cover the whole file)")
        return
    if overlapping is not None:
        # No zip tool writes this: it is how a small archive declares terabytes (a zip bomb).
        yield (f"{path}!{overlapping.filename}", "zip entry whose data overlaps another "
               "entry's (a zip bomb or a damaged archive): the archive is refused whole")
        return
    members = [(f"{path}!{info.filename}", info) for info in infos
               if Path(info.filename).name.upper() not in SKIPPED_NAMES]
    refusals = {name: why for name, info in members if (why := _member_refusal(info))}
    declared = sum(info.file_size for name, info in members if name not in refusals)
    if declared > MAX_ARCHIVE_BYTES:
        yield (str(path), f"zip archive declaring {declared:,} bytes uncompressed, over the "
                          f"{MAX_ARCHIVE_BYTES:,} of one archive: extract it and import the "
                          "folder")
        return
    for name, info in members:
        yield (name, refusals[name]) if name in refusals else Source(name, info.file_size,
                                                                     path, info)


def _member_refusal(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is not read, judged by what its entry declares (zipfile stops reading
    at the declared sizes, so they bound the work); None: it is read."""
    if info.filename.lower().endswith(".zip"):
        return "a zip archive inside a zip archive: extract it and import the folder"
    if info.file_size > MAX_MEMBER_BYTES:
        return (f"zip member of {info.file_size:,} bytes, over the {MAX_MEMBER_BYTES:,} read "
                "into memory: extract the archive and import the folder")
    if info.file_size > RATIO_FROM_BYTES and info.file_size > MAX_MEMBER_RATIO * max(
            info.compress_size, 1):
        return (f"zip member inflating {info.compress_size:,} bytes to {info.file_size:,}, "
                f"over {MAX_MEMBER_RATIO}:1 (images compress far less): a zip bomb or a "
                "damaged archive")
    return None


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length


def _overlapping_entry(path: Path, entries: list[zipfile.ZipInfo],
                       directory_start: int) -> zipfile.ZipInfo | None:
    """The first entry whose local header and data run into the next entry's (or into the
    central directory), if any. Python 3.11's zipfile does not check this: entries sharing
    one deflated stream each inflate it in full."""
    ordered = sorted(entries, key=lambda info: info.header_offset)
    with path.open("rb") as handle:
        ends = [_data_end(handle, info) for info in ordered]
    starts = [info.header_offset for info in ordered[1:]] + [directory_start]
    for info, end, following in zip(ordered, ends, starts, strict=True):
        if end > following:
            return info
    return None


def _data_end(handle, info: zipfile.ZipInfo) -> int:
    """Where an entry's compressed data ends, by its local header (whose name and extra
    field may differ in length from the central directory's). An entry pointing at no
    local header is judged by its directory entry: reading it fails, and costs it only."""
    handle.seek(info.header_offset)
    header = handle.read(_LOCAL_HEADER.size)
    if len(header) == _LOCAL_HEADER.size and header[:4] == zipfile.stringFileHeader:
        _, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    else:
        name_length, extra_length = len(info.orig_filename.encode("utf-8", "replace")), 0
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length + \
        info.compress_size


def collect(paths: list[Path]) -> tuple[list[Source], list[tuple[str, str]]]:
    """Every file to import under ``paths``, plus (path, reason) for paths that cannot be read."""
    sources: list[Source] = []
    problems: list[tuple[str, str]] = []
    mounts = _Mounts.read()
    for root in paths:
        root = Path(root)
        if not root.exists():
            problems.append((str(root), "no such file or folder"))
            continue
        files = _walk(root, problems) if root.is_dir() else [root]
        for file in files:
            if file.name.startswith(".") or file.name.upper() in SKIPPED_NAMES:
                continue
            for item in _expand(file, mounts):
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
            if summary.stopped:  # an outage: the rest waits for a re-run
                _release(data)
                break
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
        batch = self._without_changed(batch)
        if not batch or self.summary.stopped:
            for _, data in batch:
                _release(data)
            return
        datas = [data for _, data in batch]
        prepared = prepare_many(datas, self.site, self.source)
        self._collect()
        sized = [(item, len(data)) for item, data in batch]
        if self.summary.stopped or any(o is not None and o.outage for o in prepared.outcomes):
            self._give_up(prepared, sized, datas)
            return
        if self._inline:
            done: Future = Future()
            done.set_result(_finish_and_release(prepared, datas))
            self._finishing = (sized, done)
        else:
            self._finishing = (sized, self._thread.submit(_finish_and_release, prepared, datas))

    def _without_changed(self, batch: list) -> list:
        """The batch less the mapped files whose size changed since they were mapped (checked
        again here, just before they are used: one truncated since would be a SIGBUS)."""
        kept = []
        for item, data in batch:
            if isinstance(data, mmap.mmap) and _changed(data, item.size):
                _release(data)
                self.summary.add(item.name, IngestOutcome(IngestStatus.REJECTED, CHANGED), 0)
                _advance(self.progress, item)
            else:
                kept.append((item, data))
        return kept

    def _collect(self) -> None:
        if self._finishing is None:
            return
        sized, future = self._finishing
        self._finishing = None
        self._add(sized, future.result())

    def _add(self, sized: list, outcomes: list) -> None:
        """The outcomes of a batch into the summary. After an outage, files failing for an
        internal reason are not counted (nor refused): the re-run takes them."""
        for outcome in outcomes:
            if outcome is not None and outcome.outage and not self.summary.stopped:
                self.summary.stopped = outcome.outage
        for (item, size), outcome in zip(sized, outcomes, strict=True):
            if outcome is not None and not (self.summary.stopped and _internal(outcome)):
                self.summary.add(item.name, outcome, size)
            _advance(self.progress, item)

    def _give_up(self, prepared, sized: list, datas: list) -> None:
        """A batch prepared when (or as) an outage stopped the import: what it settled (waiting,
        held, refused, duplicate files) is counted, its images to store are dropped."""
        if prepared.batch is not None:
            prepared.batch.discard()  # (its temporaries)
        self._add(sized, prepared.outcomes)
        for data in datas:
            _release(data)

    def __exit__(self, *exc_info) -> None:
        try:
            self._collect()  # also after an interrupt: what was prepared is finished, once
        finally:
            self._thread.submit(close_thread_connections).result()
            self._thread.shutdown()


def _internal(outcome: IngestOutcome) -> bool:
    return outcome.status is IngestStatus.REJECTED and outcome.reason.startswith("internal error")


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
    (a damaged or encrypted zip member, a file that vanished), costs that file only. A mapped
    file is the exception left: cut short after its last size check (``_Committer``) and
    before its use, or failing a hardware read, it is a SIGBUS (the import is resumable)."""
    if item.size > MAX_FILE_BYTES:
        return IngestOutcome(IngestStatus.REJECTED, "file too large")
    try:
        return item.read(archives)
    except ChangedWhileImported:
        return IngestOutcome(IngestStatus.REJECTED, CHANGED)
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
