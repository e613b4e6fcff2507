"""Import DICOM files from folders (recursively), single files and .zip archives.

Each file goes through the intake pipeline exactly like a file received by the node, in
batches (``intake.ingest_many``: at most ``BATCH_FILES`` files or ``BATCH_BYTES`` bytes) so
that a batch is made durable and recorded at once. Zip members are read into memory one at
a time (never extracted to disk). Re-running an import is cheap: a file whose keyed SOP
Instance UID is already stored, pending or held is skipped before it is de-identified; a
process killed mid-batch loses only that batch, which the re-run stores.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .intake import ingest_many
from .outcome import IngestOutcome, IngestStatus

MAX_FILE_BYTES = 4 * 1024**3  # a single DICOM file larger than this is refused, not read
BATCH_FILES = 32               # files made durable and committed together
BATCH_BYTES = 64 * 1024**2     # ... or fewer, when they are big (bounds memory)
READ_AHEAD = 4                 # files read ahead by a thread


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
    member: str | None = None

    def read(self, archives: dict[Path, zipfile.ZipFile]) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        if self.path not in archives:
            archives[self.path] = zipfile.ZipFile(self.path)
        return archives[self.path].read(self.member)


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


def _expand(path: Path) -> Iterator[Source | tuple[str, str]]:
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        yield Source(f"{path}!{info.filename}", info.file_size, path, info.filename)
        except (zipfile.BadZipFile, OSError) as exc:
            yield (str(path), f"unreadable zip archive ({type(exc).__name__})")
        return
    yield Source(str(path), path.stat().st_size, path)


def collect(paths: list[Path]) -> tuple[list[Source], list[tuple[str, str]]]:
    """Every file to import under ``paths``, plus (path, reason) for paths that cannot be read."""
    sources: list[Source] = []
    problems: list[tuple[str, str]] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            problems.append((str(root), "no such file or folder"))
            continue
        files = _walk(root) if root.is_dir() else [root]
        for file in files:
            if file.name.startswith(".") or file.is_symlink() and not file.exists():
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
        _import_each(sources, site, source, progress, summary, archives)
    finally:
        for archive in archives.values():
            archive.close()
    return summary


def _import_each(sources, site, source, progress, summary, archives) -> None:
    batch: list[tuple[Source, bytes]] = []
    held = 0
    with contextlib.closing(_read_ahead(sources, archives)) as reads:  # reader done on exit
        for item, data in reads:
            if isinstance(data, IngestOutcome):
                summary.add(item.name, data, 0)
                _advance(progress, item)
                continue
            batch.append((item, data))
            held += len(data)
            if len(batch) >= BATCH_FILES or held >= BATCH_BYTES:
                _flush(batch, site, source, progress, summary)
                batch, held = [], 0
    _flush(batch, site, source, progress, summary)


def _read_ahead(sources, archives, window: int = READ_AHEAD) -> Iterator[tuple[Source, object]]:
    """(source, bytes or a REJECTED outcome) in order; the next files are read by a thread
    while the current ones are de-identified (reads release the GIL). Only that thread
    touches ``archives``."""
    with ThreadPoolExecutor(1, thread_name_prefix="nccid-read") as reader:
        queue: deque = deque()
        remaining = iter(sources)
        for item in remaining:
            queue.append((item, reader.submit(_read_one, item, archives)))
            if len(queue) >= window:
                break
        while queue:
            item, future = queue.popleft()
            following = next(remaining, None)
            if following is not None:
                queue.append((following, reader.submit(_read_one, following, archives)))
            yield item, future.result()


def _read_one(item: Source, archives) -> bytes | IngestOutcome:
    if item.size > MAX_FILE_BYTES:
        return IngestOutcome(IngestStatus.REJECTED, "file too large")
    try:
        return item.read(archives)
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
        return IngestOutcome(IngestStatus.REJECTED, f"unreadable ({type(exc).__name__})")


def _flush(batch, site, source, progress, summary) -> None:
    if not batch:
        return
    outcomes = ingest_many([data for _, data in batch], site, source)
    for (item, data), outcome in zip(batch, outcomes, strict=True):
        summary.add(item.name, outcome, len(data))
        _advance(progress, item)
    batch.clear()


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
