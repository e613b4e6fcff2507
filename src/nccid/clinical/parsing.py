"""How many large sheets a process reads at once, and giving their memory back afterwards.

Reading and checking a large sheet takes hundreds of megabytes for a while: six 45 MB uploads
at once drove one portal worker to a gigabyte, and glibc kept most of it (3.8 GB minutes
later). So a process reads one large sheet at a time (``LARGE_SHEETS_AT_ONCE``); the others
wait their turn, while small sheets and every other page go on. After a large sheet the
C allocator is asked to return its free memory to the system (glibc ``malloc_trim``; other C
libraries are left as they are).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nccid.memory import give_memory_back

log = logging.getLogger("nccid.clinical")

LARGE_SHEET_BYTES = 1024 * 1024  # a sheet this large waits for its turn
LARGE_SHEETS_AT_ONCE = 1  # per process (a portal worker's threads share it)


class SheetGate:
    """At most ``slots`` large sheets read at once; smaller ones are not held up.
    ``on_wait`` is called when a large sheet has to wait for its turn."""

    def __init__(self, slots: int = LARGE_SHEETS_AT_ONCE, large: int = LARGE_SHEET_BYTES,
                 on_wait: Callable[[], None] | None = None):
        self.large = large
        self.on_wait = on_wait
        self._slots = threading.BoundedSemaphore(slots)

    @contextmanager
    def turn(self, size: int) -> Iterator[None]:
        """Wait for a turn to read a sheet of ``size`` bytes; its memory is given back after."""
        if size < self.large:
            yield
            return
        if not self._slots.acquire(blocking=False):
            log.info("a sheet of %s bytes waits for the one being read", size)
            if self.on_wait is not None:
                self.on_wait()
            self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()
            give_memory_back()


SHEETS = SheetGate()
