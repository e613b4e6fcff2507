"""Staging folders for exports: held by a lock while in use, swept once their process is gone.

An export is built in a staging folder and moved into place at the end. A process killed
mid-way (SIGKILL, a portal restart past its grace period) cannot remove its folder, which
holds the cohort's tables and images. Each folder is locked (``flock`` on the folder itself)
by the process using it; the kernel drops a dead process's locks, so a sweep removes exactly
the folders no live process holds, however young, and never one in use. The portal builds
its exports under ``staging_root()``, swept whenever an nccid process starts and before each
export; a command-line export sweeps the folder it writes into.

Standard library only: every nccid process imports this at start (``ResearchConfig.ready``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = ".nccid-export-"  # specific: a sweep must never take a user's own folder
_NEW = ".nccid-new-"  # made, not yet locked: renamed to PREFIX only once locked
_NEW_GRACE = 60  # seconds; an unlocked _NEW folder older than this was never finished (empty)


def staging_root() -> Path:
    """Where the portal builds API exports: in the installation's home, never the shared /tmp."""
    from nccid.config import get_settings

    return get_settings().home / "export-staging"


class Staging:
    """A locked staging folder; ``release()`` removes it and drops the lock."""

    def __init__(self, parent: Path) -> None:
        sweep(parent)
        made = Path(tempfile.mkdtemp(prefix=_NEW, dir=parent))
        self._fd = os.open(made, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        # Visible under PREFIX only once locked: a sweep never sees it unlocked while alive
        # (the lock is on the folder's inode, which the rename keeps).
        self.path = parent / (PREFIX + made.name.removeprefix(_NEW))
        os.rename(made, self.path)

    def release(self) -> None:
        if self._fd is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            os.close(self._fd)
            self._fd = None


@contextmanager
def staging_folder(parent: Path) -> Iterator[Path]:
    """A new locked staging folder under ``parent`` (made if missing), removed on leaving."""
    parent.mkdir(parents=True, exist_ok=True)
    staging = Staging(parent)
    try:
        yield staging.path
    finally:
        staging.release()


def sweep(parent: Path) -> list[Path]:
    """Remove the staging folders under ``parent`` that no live process holds; the removed."""
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith((PREFIX, _NEW))]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder for folder in candidates if _remove_if_abandoned(folder)]


def _remove_if_abandoned(folder: Path) -> bool:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # removed meanwhile, or not a folder: not ours to touch
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # a live export holds it
    try:
        if folder.name.startswith(_NEW) and time.time() - os.fstat(fd).st_mtime < _NEW_GRACE:
            return False  # being made this instant, about to be locked
        shutil.rmtree(folder, ignore_errors=True)
        return not folder.exists()
    finally:
        os.close(fd)


def sweep_at_start() -> None:
    """The portal's staging folders left by killed exports, removed when a process starts
    (a gunicorn worker replacing a killed one, a restarted portal, any nccid command)."""
    import logging

    try:
        removed = sweep(staging_root())
    except OSError as exc:  # never stop a process from starting
        logging.getLogger(__name__).warning("export staging not swept (%s)", type(exc).__name__)
        return
    if removed:
        logging.getLogger(__name__).info("removed %d export staging folder(s) left by "
                                         "interrupted exports", len(removed))
