"""A durable, encrypted, append-only spool of received DICOM instances (the node's inbox).

The node acknowledges an instance once it is here: encrypted with AES-256-GCM (the keyring's
``spool`` sub-key) and ``fdatasync``'d. A drain thread then takes records out in order and
stores them; a segment whose every record has an outcome is deleted, or kept as a spare.

Spares: a flush of data written over blocks the file already has is one write and a cache
flush; a flush of an appended block also writes the file's new size and allocation (measured
here: 0.28 against 0.55 ms for a 512 KB record, 3 against 6-25 ms for 8 MB). So up to
``SPARES`` drained segments are renamed ``spare-<seq>.log`` and overwritten by the next new
segments. What they hold beyond the new records is old records, encrypted and bound to
their old segment's name, which never authenticate under the new one; an ``END`` mark (a
record header of zeros) written after every record is where a scan stops. Spares are deleted
when the node goes idle (``discard_spares``), when it stops, and when it starts.

On disk (folder 0700, files 0600), ``segment-<16-digit seq>.log``:

- a file header ``NCSPOOL\\x01``;
- records: ``NCSR`` + token length (8 bytes, big-endian) + token, where the token is
  ``keyring.encrypt(site code, source, file bytes)`` with the segment name and the record's
  offset as associated data, so a record moved elsewhere fails authentication. A token is
  read and decrypted piece by piece too, never held whole beside its file.

A record is encrypted and written in pieces of ``PIECE_BYTES``, each piece's writeback
started at once (``sync_file_range``), so the disk writes while the next piece is encrypted
and the ``fdatasync`` before the acknowledgement waits only for the last; the record's header
is written last, over the ``END`` mark before it, so a scan never reaches a record still being
written. A crash mid-append leaves either nothing visible or a torn last record (short, or
failing its GCM tag): it was never acknowledged, and is cut off on the next start (the
newest segment is authenticated record by record then: in a reused segment a torn record may
be followed by old ones). A record failing
authentication anywhere else is skipped and its segment kept as ``….corrupt`` for an operator.
Pure Python: no Django.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag

from nccid.warehouse.storage import start_writeback, write_all

log = logging.getLogger("nccid.imaging.spool")

FILE_MAGIC = b"NCSPOOL\x01"
RECORD = struct.Struct(">4sQ")  # magic, token length
RECORD_MAGIC = b"NCSR"
END = bytes(RECORD.size)  # after the last record: a scan stops here
# A record is encrypted and written in pieces of this size, each one's writeback started at
# once: the disk writes a piece while the next is encrypted, and the fdatasync before the
# acknowledgement waits only for the last. One reused buffer holds a piece's ciphertext.
PIECE_BYTES = 1024 * 1024
# A record's file of this size or more is decrypted into an anonymous mapping of its own: the
# system has the memory back whole once it is dropped (a heap may keep it for the process).
LARGE_RECORD = 16 * 1024 * 1024
SPARES = 2  # drained segments kept to be overwritten (see the module docstring)
MAX_TOKEN = 1 << 40  # no DICOM file is a terabyte: a bigger length is a torn or foreign header
_NAME = re.compile(r"segment-(\d{16})\.log")
_SPARE_GLOB = "spare-*.log"
_CONTEXT = "nccid-spool-v1:{name}:{offset}"
# Segment numbers start again at 1 once a spool was emptied: the time keeps names apart.
_QUARANTINED = "segment-{seq:016d}-at-{offset:012d}-{ns}.record"
_QUARANTINED_NAME = re.compile(r"segment-(\d{16})-at-(\d{12})-\d+\.record")
# Written by ``close``: "<segment> <offset>", where the first record without an outcome was.
# Segments are replayed whole (release deletes only whole segments), so a start counts the
# records past it to say how many are still to be stored; it is read once, at the next start.
_DRAINED_MARK = "drained-to"


class SpoolError(Exception):
    """The spool cannot take or give records (disk full, closed, in use by another node)."""


class SpoolClosed(SpoolError):
    """The spool was closed: the node is stopping (not a fault of the disk)."""


@dataclass(frozen=True)
class Backlog:
    records: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Record:
    site_code: str  # "" while sealed
    source: str
    data: bytes | mmap.mmap | None  # the file, decrypted (``open_record``); None while sealed
    segment: int
    offset: int
    length: int = 0  # the token's length on disk

    @property
    def sealed(self) -> bool:
        """Not decrypted yet: ``open_record`` reads it (in the node's worker process)."""
        return self.data is None


@dataclass
class Batch:
    """Records read in order; ``release(batch)`` once each has an outcome."""

    records: list[Record] = field(default_factory=list)
    skipped: int = 0  # records that failed authentication (counted out of the backlog)
    disk_bytes: int = 0  # on-disk size of records and skipped ones
    position: tuple[int, int] = (0, 0)  # where the next read starts
    finished: list[int] = field(default_factory=list)  # sealed segments read to their end


def segment_name(seq: int) -> str:
    return f"segment-{seq:016d}.log"


def _segments(directory: Path) -> list[int]:
    found = (_NAME.fullmatch(p.name) for p in directory.iterdir()) if directory.is_dir() else ()
    return sorted(int(m.group(1)) for m in found if m)


def _scan(path: Path) -> tuple[int, int, int]:
    """(records, token bytes, end of the last well-framed record) of a segment file."""
    size = path.stat().st_size
    records = total = 0
    with open(path, "rb") as handle:
        if handle.read(len(FILE_MAGIC)) != FILE_MAGIC:
            return 0, 0, 0
        offset = len(FILE_MAGIC)
        while offset + RECORD.size <= size:
            magic, length = RECORD.unpack(handle.read(RECORD.size))
            if magic != RECORD_MAGIC or length > MAX_TOKEN or offset + RECORD.size + length > size:
                break
            records, total = records + 1, total + length
            offset += RECORD.size + length
            handle.seek(offset)
    return records, total, offset


def _record_starts(path: Path, end: int) -> list[int]:
    """Where each record of a segment (recovered: well framed up to ``end``) starts."""
    starts, offset = [], len(FILE_MAGIC)
    fd = os.open(path, os.O_RDONLY)
    try:
        while offset < end:
            starts.append(offset)
            offset += RECORD.size + RECORD.unpack(_pread_exact(fd, RECORD.size, offset))[1]
    finally:
        os.close(fd)
    return starts


def spool_backlog(directory: Path) -> Backlog:
    """Records and bytes in the spool folder, read from the record headers (nothing decrypted).

    For a running node this counts the segments not yet deleted (a partly drained one whole);
    ``Spool.backlog()`` is exact."""
    records = total = 0
    for seq in _segments(Path(directory)):
        try:
            n, size, _ = _scan(Path(directory) / segment_name(seq))
        except FileNotFoundError:  # drained and deleted meanwhile
            continue
        records, total = records + n, total + size
    return Backlog(records, total)


def quarantine_dir(directory: Path) -> Path:
    """Where records the node's worker could not survive are kept for an operator."""
    return Path(directory) / "quarantine"


def quarantined(directory: Path) -> list[Path]:
    """The quarantined records of a spool folder, oldest first."""
    folder = quarantine_dir(directory)
    found = (p for p in folder.iterdir() if _QUARANTINED_NAME.fullmatch(p.name)) \
        if folder.is_dir() else ()
    return sorted(found)


def open_quarantined(keyring, path: Path) -> tuple[str, str, bytes | mmap.mmap]:
    """(site code, source, file) of a quarantined record (its token alone, read piece by
    piece); InvalidTag unless authentic."""
    match = _QUARANTINED_NAME.fullmatch(Path(path).name)
    if match is None:
        raise ValueError(f"{Path(path).name} is not a quarantined spool record")
    fd = os.open(path, os.O_RDONLY)
    try:
        return _open_token(keyring, int(match.group(1)), int(match.group(2)),
                           os.fstat(fd).st_size, lambda start, count: _pread_exact(fd, count, start))
    finally:
        os.close(fd)


def requeue_quarantined(spool: Spool) -> int:
    """Append every quarantined record to ``spool`` again (a new record, encrypted anew) and
    delete its quarantined copy once the new record is durable; how many. One failing
    authentication stays where it is (InvalidTag)."""
    count = 0
    for path in quarantined(spool.directory):
        code, source, data = open_quarantined(spool._keyring, path)
        spool.append(code, source, data)
        path.unlink()
        fsync_dir(path.parent)
        count += 1
    return count


def _at_end_mark(path: Path, offset: int) -> bool:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(RECORD.size) in (END, b"")


def fsync_dir(directory: Path) -> None:
    """Make a rename or new name in ``directory`` survive a power cut (POSIX)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pieces(parts: list, size: int):
    """``parts`` (buffers) regrouped as lists of views of ``size`` bytes together (the last
    one shorter): each is one write."""
    group, filled = [], 0
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            take = view[:size - filled]
            group.append(take)
            filled += len(take)
            view = view[len(take):]
            if filled == size:
                yield group
                group, filled = [], 0
    if group:
        yield group


def _prefix(site_code: str, source: str) -> bytes:
    """What precedes the file in a record's plaintext: the lengths, then site and source."""
    site, src = site_code.encode(), source.encode()
    if len(site) > 255 or len(src) > 255:
        raise ValueError("site code and source must be at most 255 bytes")
    return bytes((len(site), len(src))) + site + src


def _open_token(keyring, seq: int, offset: int, length: int,
                read: Callable[[int, int], bytes]) -> tuple[str, str, bytes | mmap.mmap]:
    """(site code, source, the file) of a record's token of ``length`` bytes, ``read(start,
    count)`` from it piece by piece: the ciphertext is never held whole beside the file (a
    600 MB instance cost the worker 1.2 GB so). A file of ``LARGE_RECORD`` bytes or more comes
    in an anonymous mapping, given back to the system whole once dropped; a smaller one as
    ``bytes``. Raises InvalidTag unless authentic (the file is returned only after its tag)."""
    if length < 12 + 2 + 16:
        raise InvalidTag  # too short to be a token: as unauthentic as an altered one
    context = _CONTEXT.format(name=segment_name(seq), offset=offset)
    # A token without its ciphertext (nonce and tag): the decryptor takes the pieces after.
    _, decryptor = keyring.decryptor(read(0, 12) + read(length - 16, 16), context,
                                     purpose="spool")
    pieces = (read(start, min(PIECE_BYTES, length - 16 - start))
              for start in range(12, length - 16, PIECE_BYTES))
    first = decryptor.update(next(pieces))  # a piece: the names (at most 512 bytes) are in it
    names = 2 + first[0] + first[1] if len(first) >= 2 else length
    if len(first) < names:
        raise InvalidTag  # names beyond the token, or a file cut short: no record of ours
    data = _decrypted(decryptor, first[names:], pieces, length - 28 - names)
    decryptor.finalize()
    a = first[0]
    return first[2:2 + a].decode(), first[2 + a:names].decode(), data


def _decrypted(decryptor, start: bytes, pieces, size: int) -> bytes | mmap.mmap:
    """The file: ``start`` (decrypted), then the rest of the ciphertext's ``pieces``."""
    if size < LARGE_RECORD:
        return b"".join([start, *map(decryptor.update, pieces)])
    data = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    data.write(start)
    for piece in pieces:
        data.write(decryptor.update(piece))
    data.seek(0)
    return data


def _token_reader(fd: int, offset: int) -> Callable[[int, int], bytes]:
    """``read(start, count)`` of the token of the record at ``offset`` of the file ``fd``."""
    return lambda start, count: _pread_exact(fd, count, offset + RECORD.size + start)


def open_record(directory: Path, keyring, record: Record) -> tuple[str, str, bytes | mmap.mmap]:
    """(site code, source, file) of a sealed record, read from its segment and decrypted;
    raises InvalidTag when it fails authentication, OSError when it cannot be read."""
    fd = os.open(Path(directory) / segment_name(record.segment), os.O_RDONLY)
    try:
        if os.fstat(fd).st_size < record.offset + RECORD.size + record.length:
            raise OSError(f"spool {segment_name(record.segment)}: a record is shorter than "
                          "written")
        return _open_token(keyring, record.segment, record.offset, record.length,
                           _token_reader(fd, record.offset))
    finally:
        os.close(fd)


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts, got = [data], len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class Spool:
    """One node's spool. ``append`` from any thread; ``read_batch``/``release`` from one drain."""

    def __init__(self, directory: Path, keyring, segment_bytes: int = 256 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self._keyring = keyring
        self._segment_bytes = segment_bytes
        # Appends are serialised by _write_lock, held through the fdatasync; the counters and
        # sizes the drain reads are under _lock, held only for moments.
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._lock_fd = self._take_folder()
        self._sizes: dict[int, int] = {}  # segment -> end of its last record
        self._corrupt: set[int] = set()
        self._read_fds: dict[int, int] = {}
        self._spares: list[Path] = []  # drained segments to overwrite (under _lock)
        self._active: int | None = None  # the segment appended to, and its descriptor
        self._active_fd = -1
        self._ciphertext = bytearray(PIECE_BYTES + 16)  # under _write_lock
        self._records = self._bytes = 0
        self._appends = 0
        self._woken = False
        self._closed = False
        self._recover()
        self._run_start = self._next_seq  # segments below it were left by an earlier run
        first = min(self._sizes, default=self._next_seq)
        self._position = (first, len(FILE_MAGIC))
        # Where the last clean stop had drained to (None after a crash or an empty spool), and
        # how many records past it wait: the others, replayed, come back as duplicates.
        self._drained_to = self._read_drained_mark()
        self.not_drained_at_start = self._count_from(self._drained_to)

    # -- start -------------------------------------------------------------------------------

    def _take_folder(self) -> int:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolError(f"spool {self.directory} is in use by another node process") from None
        return fd

    def _recover(self) -> None:
        """Count what a previous run left; cut torn tails (never acknowledged)."""
        seqs = _segments(self.directory)
        self._next_seq = (seqs[-1] + 1) if seqs else 1
        changed = False
        for seq in seqs:
            path = self.directory / segment_name(seq)
            records, total, end = _scan(path)
            if end == 0:  # shorter than its header, or not a spool file: nothing acknowledged
                changed = self._set_aside(seq, path, "has no spool header")
                continue
            if end < path.stat().st_size:
                if not _at_end_mark(path, end):
                    log.warning("spool %s: a torn record at offset %d cut off (it was never "
                                "acknowledged)", path.name, end)
                os.truncate(path, end)
                changed = True
            if records == 0:
                path.unlink()
                changed = True
                continue
            os.chmod(path, 0o600)
            self._sizes[seq] = end
            self._records += records
            self._bytes += total
        if self._sizes:
            changed |= self._authenticate_tail(max(self._sizes))
        for spare in self.directory.glob(_SPARE_GLOB):  # old records only: never needed again
            spare.unlink()
            changed = True
        if changed:
            fsync_dir(self.directory)

    def _read_drained_mark(self) -> tuple[int, int] | None:
        """The position ``close`` wrote, if any; the mark is removed (a crash from here on
        leaves none, and a start then counts the segments whole)."""
        path = self.directory / _DRAINED_MARK
        path.with_name(_DRAINED_MARK + ".new").unlink(missing_ok=True)  # a stop cut short
        try:
            seq, offset = map(int, path.read_text().split())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            seq = offset = -1
        path.unlink(missing_ok=True)
        fsync_dir(self.directory)
        return (seq, offset) if seq >= 0 else None

    def _count_from(self, position: tuple[int, int] | None) -> int | None:
        """The records at or after ``position``; None when it is not a record's start here."""
        if position is None or any(seq < position[0] for seq in self._sizes):
            return None
        count = 0
        for seq in sorted(self._sizes):
            starts = _record_starts(self.directory / segment_name(seq), self._sizes[seq])
            if seq > position[0]:
                count += len(starts)
            elif position[1] not in (*starts, self._sizes[seq]):
                return None
            else:
                count += sum(1 for start in starts if start >= position[1])
        return count

    def _authenticate_tail(self, seq: int) -> bool:
        """Cut the newest segment after its last record that authenticates: a crash mid-append
        may have left a torn record there, followed (in a reused segment) by old ones that
        still look well framed. True if anything was cut."""
        path = self.directory / segment_name(seq)
        offset, end, last_good = len(FILE_MAGIC), self._sizes[seq], len(FILE_MAGIC)
        fd = os.open(path, os.O_RDONLY)
        try:
            while offset < end:
                _, length = RECORD.unpack(_pread_exact(fd, RECORD.size, offset))
                nxt = offset + RECORD.size + length
                try:
                    _open_token(self._keyring, seq, offset, length, _token_reader(fd, offset))
                    last_good = nxt
                except InvalidTag:
                    pass  # torn, or corrupt if a good one follows (the drain decides)
                offset = nxt
        finally:
            os.close(fd)
        if last_good == end:
            return False
        records, total, _ = _scan(path)
        os.truncate(path, last_good)
        kept, kept_total, _ = _scan(path)
        log.warning("spool %s: %d torn record(s) from offset %d cut off (never acknowledged)",
                    path.name, records - kept, last_good)
        self._records -= records - kept
        self._bytes -= total - kept_total
        self._sizes[seq] = last_good
        if kept == 0:
            path.unlink()
            del self._sizes[seq]
        return True

    def _set_aside(self, seq: int, path: Path, why: str) -> bool:
        if path.stat().st_size <= len(FILE_MAGIC):
            path.unlink()
        else:
            log.error("spool %s %s: kept as %s.corrupt for an operator", path.name, why, path.name)
            path.rename(path.with_name(path.name + ".corrupt"))
        return True

    # -- append ------------------------------------------------------------------------------

    def append(self, site_code: str, source: str, data,
               check: Callable[[], str | None] | None = None) -> str | None:
        """Encrypt and append one instance (bytes, or a list of buffers that make it up);
        returns once it is on stable storage.

        ``check()``, if given, runs once the record's body is written and before its header:
        the disk writes the body meanwhile. What it returns, if anything, is a reason to
        refuse the file: the record is left without a header (never seen, overwritten by the
        next) and ``append`` returns that reason."""
        parts = list(data) if isinstance(data, (list, tuple)) else [data]  # (or an mmap)
        prefix = _prefix(site_code, source)
        with self._write_lock:
            if self._closed:
                raise SpoolClosed("the spool is closed")
            size = RECORD.size + len(prefix) + sum(map(len, parts)) + 28  # nonce 12, tag 16
            if self._active is None or (self._sizes[self._active] + size > self._segment_bytes
                                        and self._sizes[self._active] > len(FILE_MAGIC)):
                self._open_segment()
            seq, offset = self._active, self._sizes[self._active]
            context = _CONTEXT.format(name=segment_name(seq), offset=offset)
            length = size - RECORD.size  # the token: nonce, ciphertext, tag
            refused = self._write([prefix, *parts], context, length, offset, check)
            if refused is not None:
                return refused
            with self._changed:  # now the drain may read it
                self._sizes[seq] = offset + RECORD.size + length
                self._records += 1
                self._bytes += length
                self._appends += 1
                self._changed.notify_all()
        return None

    def _write(self, plain: list, context: str, length: int, offset: int,
               check: Callable[[], str | None] | None) -> str | None:
        """The record (header, nonce, ciphertext, tag, then the END mark) at ``offset``,
        encrypted and written piece by piece; on stable storage when this returns. The header
        goes last, over the END mark that ended the spool so far: until then every scan
        stops before the record, whole or torn. ``check``'s refusal, if any, comes first."""
        fd = self._active_fd
        nonce, encryptor = self._keyring.encryptor(context, purpose="spool")
        cipher = memoryview(self._ciphertext)
        head = [nonce]
        position = offset + RECORD.size
        try:
            for piece in _pieces(plain, PIECE_BYTES):
                filled = 0
                for view in piece:
                    filled += encryptor.update_into(view, cipher[filled:])
                written = write_all(fd, [*head, cipher[:filled]], position)
                start_writeback(fd, position, written)
                position += written
                head = []
            encryptor.finalize()
            write_all(fd, [*head, encryptor.tag, END], position)
            refused = check() if check is not None else None
            if refused is not None:
                return refused
            write_all(fd, [RECORD.pack(RECORD_MAGIC, length)], offset)
            os.fdatasync(fd)
        except OSError as exc:
            try:  # leave no half record: the next append must start at a record boundary
                os.ftruncate(fd, offset)
            except OSError:
                pass
            raise SpoolError(f"cannot write to the spool {self.directory} "
                             f"({exc.strerror or type(exc).__name__})") from None

    def _open_segment(self) -> None:
        """A new segment to append to (under the write lock); the old one stays until drained."""
        if self._active is not None:
            os.close(self._active_fd)
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / segment_name(seq)
        with self._lock:
            spare = self._spares.pop() if self._spares else None
        try:
            if spare is not None:
                os.rename(spare, path)
                fd = os.open(path, os.O_WRONLY)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot create a spool segment in {self.directory} "
                             f"({exc.strerror or type(exc).__name__})") from None
        try:
            write_all(fd, [FILE_MAGIC, END], 0)
            os.fdatasync(fd)
            fsync_dir(self.directory)  # the new name survives a power cut too
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise SpoolError(f"cannot create a spool segment in {self.directory} "
                             f"({exc.strerror or type(exc).__name__})") from None
        with self._lock:
            self._active, self._active_fd = seq, fd
            self._sizes[seq] = len(FILE_MAGIC)

    # -- drain -------------------------------------------------------------------------------

    def read_batch(self, max_records: int = 32, max_bytes: int = 64 * 1024 * 1024,
                   sealed: bool = False, after: Batch | None = None) -> Batch:
        """The next records in order (at least one if any wait), up to the limits; never waits.

        ``sealed``: the records this process appended come back unread (``Record.sealed``),
        for the node's worker process to read and decrypt itself (``open_record``) rather
        than have this one, which is receiving, decrypt them and pipe them across. What an
        earlier run left is always read here, where a torn tail can be cut.

        ``after``: a batch read but not released yet; the records that follow it (a drain
        keeps one batch in flight while the next is read). Release them in order."""
        with self._lock:
            sizes, active = dict(self._sizes), self._active
        seq, offset = after.position if after is not None else self._position
        batch = Batch(position=(seq, offset))
        for seq in sorted(s for s in sizes if s >= batch.position[0]):
            end = sizes[seq]
            if seq != batch.position[0]:
                offset = len(FILE_MAGIC)
            while offset < end and len(batch.records) < max_records:
                if batch.records and batch.disk_bytes >= max_bytes:
                    break
                offset = self._read_one(seq, offset, end, batch, sealed)
                end = min(end, self._sizes.get(seq, end))  # a torn tail may have been cut
            batch.position = (seq, offset)
            if offset < end or seq == active:  # the active one may grow: never finished here
                break
            batch.finished.append(seq)
        return batch

    def skip(self, count: int, after: Batch) -> Batch:
        """An empty batch ``count`` records on from ``after`` (or where the records end): to
        read further on (``read_batch(after=…)``) without reading what lies between. Only
        the records' frames are read, whatever their size; never released."""
        with self._lock:
            sizes = dict(self._sizes)
        seq, offset = after.position
        for seq in sorted(s for s in sizes if s >= after.position[0]):
            end = sizes[seq]
            if seq != after.position[0]:
                offset = len(FILE_MAGIC)
            while offset < end and count > 0:
                magic, length = RECORD.unpack(_pread_exact(self._read_fd(seq), RECORD.size, offset))
                if magic != RECORD_MAGIC or offset + RECORD.size + length > end:
                    return Batch(position=(seq, offset))  # a torn record: read_batch deals
                offset += RECORD.size + length
                count -= 1
            if count == 0:
                break
        return Batch(position=(seq, offset))

    def _read_one(self, seq: int, offset: int, end: int, batch: Batch, sealed: bool) -> int:
        """Read the record at ``offset`` into ``batch``; returns the next record's offset."""
        fd = self._read_fd(seq)
        magic, length = RECORD.unpack(_pread_exact(fd, RECORD.size, offset))
        if magic != RECORD_MAGIC or offset + RECORD.size + length > end:
            self._cut(seq, offset, "a torn record")  # only if the file changed since the start
            return offset
        nxt = offset + RECORD.size + length
        batch.disk_bytes += length
        if sealed and seq >= self._run_start:
            batch.records.append(Record("", "", None, seq, offset, length))
            return nxt
        try:
            site_code, source, data = _open_token(self._keyring, seq, offset, length,
                                                  _token_reader(fd, offset))
        except InvalidTag:
            if nxt == end and seq < self._run_start:  # the last record a crash left
                batch.disk_bytes -= length
                self._cut(seq, offset, "a torn record (failed its GCM tag)", length)
                return offset
            self.record_corrupt(Record("", "", None, seq, offset, length))
            batch.skipped += 1
            return nxt
        batch.records.append(Record(site_code, source, data, seq, offset, length))
        return nxt

    def record_corrupt(self, record: Record) -> None:
        """``record`` failed authentication (moved, altered or written with another key): it
        gets no outcome, and its segment is kept for an operator once drained."""
        log.error("spool %s: the record at offset %d fails authentication (moved, altered "
                  "or written with another key): skipped; the segment will be kept",
                  segment_name(record.segment), record.offset)
        self._corrupt.add(record.segment)

    def _cut(self, seq: int, offset: int, what: str, counted: int | None = None) -> None:
        """Cut a torn tail off; ``counted``: its token length, if the backlog counted it."""
        with self._lock:
            log.warning("spool %s: %s at offset %d cut off (it was never acknowledged)",
                        segment_name(seq), what, offset)
            os.truncate(self.directory / segment_name(seq), offset)
            self._sizes[seq] = offset
            if counted is not None:
                self._records -= 1
                self._bytes -= counted
            self._changed.notify_all()

    def _read_fd(self, seq: int) -> int:
        fd = self._read_fds.get(seq)
        if fd is None:
            fd = self._read_fds[seq] = os.open(self.directory / segment_name(seq), os.O_RDONLY)
        return fd

    def release(self, batch: Batch) -> None:
        """Every record of ``batch`` has an outcome: forget them, delete finished segments."""
        # Caught up with the appends: the active segment goes too (next append starts a new
        # one), unless an append is under way (then it is not caught up for long).
        writing = not self._write_lock.acquire(blocking=False)
        try:
            with self._changed:
                self._records -= len(batch.records) + batch.skipped
                self._bytes -= batch.disk_bytes
                self._position = batch.position
                done = list(batch.finished)
                seq, offset = batch.position
                if not writing and seq == self._active and offset >= self._sizes[seq]:
                    os.close(self._active_fd)
                    self._active, self._active_fd = None, -1
                    done.append(seq)
                    self._position = (self._next_seq, len(FILE_MAGIC))
                for seq in done:
                    self._remove(seq)
                if done:
                    fsync_dir(self.directory)
                self._changed.notify_all()
        finally:
            if not writing:
                self._write_lock.release()

    def _remove(self, seq: int) -> None:
        fd = self._read_fds.pop(seq, None)
        if fd is not None:
            os.close(fd)
        self._sizes.pop(seq, None)
        path = self.directory / segment_name(seq)
        if seq in self._corrupt:
            self._corrupt.discard(seq)
            path.rename(path.with_name(path.name + ".corrupt"))
            log.error("spool %s kept as %s.corrupt (a record failed authentication)",
                      path.name, path.name)
        elif len(self._spares) < SPARES and path.exists():
            spare = path.with_name(f"spare-{seq:016d}.log")
            path.rename(spare)
            self._spares.append(spare)
        else:
            path.unlink(missing_ok=True)

    # -- quarantine --------------------------------------------------------------------------

    @property
    def position(self) -> tuple[int, int]:
        """(segment, offset) where the first record without an outcome is read."""
        with self._lock:
            return self._position

    def quarantine(self, record: Record) -> tuple[str, Path]:
        """Copy ``record`` (still encrypted, as in its segment) to the ``quarantine`` folder
        for an operator, durably, before it is released: (its site code, or "" if it fails
        authentication; the copy). Its name keeps the segment and offset its encryption is
        bound to, so ``open_quarantined`` can still read it."""
        folder = quarantine_dir(self.directory)
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.directory / segment_name(record.segment), os.O_RDONLY)
        try:
            token = _pread_exact(fd, record.length, record.offset + RECORD.size)
        finally:
            os.close(fd)
        place = folder / _QUARANTINED.format(seq=record.segment, offset=record.offset,
                                             ns=time.time_ns())
        out = os.open(place, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(out, [token], 0)
            os.fsync(out)
        finally:
            os.close(out)
        fsync_dir(folder)
        fsync_dir(self.directory)
        try:
            code = _open_token(self._keyring, record.segment, record.offset, record.length,
                               lambda start, count: token[start:start + count])[0]
        except InvalidTag:
            code = ""
        return code, place

    # -- waiting -----------------------------------------------------------------------------

    def backlog(self) -> Backlog:
        with self._lock:
            return Backlog(self._records, self._bytes)

    @property
    def appends(self) -> int:
        return self._appends

    def wait_for_more(self, seen_appends: int, timeout: float) -> bool:
        """Wait until something is appended after ``seen_appends``, ``wake()``, or timeout;
        True if something was appended."""
        with self._changed:
            self._changed.wait_for(lambda: self._appends != seen_appends or self._woken, timeout)
            self._woken = False
            return self._appends != seen_appends

    @property
    def has_spares(self) -> bool:
        return bool(self._spares)

    def discard_spares(self) -> None:
        """Delete the spare segments (old records, encrypted): an idle node keeps none."""
        with self._lock:
            spares, self._spares = self._spares, []
        for spare in spares:
            spare.unlink(missing_ok=True)
        if spares:
            fsync_dir(self.directory)

    def wake(self) -> None:
        with self._changed:
            self._woken = True
            self._changed.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        """True once every record has an outcome (False on timeout)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._records == 0, timeout)

    def close(self) -> None:
        """Close the files (what is not drained stays for the next start)."""
        with self._write_lock, self._changed:
            if self._closed:
                return
            self._closed = True
            self._mark_drained()
            if self._active is not None:
                os.close(self._active_fd)
                self._active, self._active_fd = None, -1
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
            for spare in self._spares:
                spare.unlink(missing_ok=True)
            self._spares.clear()
            os.close(self._lock_fd)
            self._changed.notify_all()

    def _mark_drained(self) -> None:
        """Write where the drain stopped (``_DRAINED_MARK``) for the next start's count: here,
        or where the previous stop had drained to if this run did not get as far."""
        if not self._records:
            return
        seq, offset = max(self._position, self._drained_to or (0, 0))
        path = self.directory / _DRAINED_MARK
        try:
            scratch = path.with_name(_DRAINED_MARK + ".new")
            scratch.write_text(f"{seq} {offset}\n")
            os.chmod(scratch, 0o600)
            scratch.replace(path)
            fsync_dir(self.directory)
        except OSError as exc:  # only a log line is lost: the next start counts segments whole
            log.warning("spool %s: where the drain stopped was not noted (%s)", self.directory,
                        exc.strerror or type(exc).__name__)
