"""Linking that resumes by itself wherever the DICOM node runs.

Waiting images whose clinical record is in are linked by the sheet's own request; one killed
mid-link, or stopped by an outage of the store or of the folder of waiting images, leaves them
to the next linking pass (``linking.link_known``). ``nccid images link`` and the daily
``purge-pending`` run that pass; the node runs it too, when it starts and every
``LINK_PASS_SECONDS``, so an installation without those cron jobs (``make run``) recovers too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LINK_PASS_SECONDS = 600.0
# A pass runs in the node's main thread, which must see SIGTERM promptly: it links for at most
# this long per tick and, with images left, goes on at the next tick (a second later).
TICK_SECONDS = 2.0


class LinkingUpkeep:
    """Runs a linking pass at the first ``tick`` and then once every ``interval`` seconds."""

    def __init__(self, interval: float = LINK_PASS_SECONDS,
                 clock: Callable[[], float] = time.monotonic, slice_: float = TICK_SECONDS) -> None:
        self.interval = interval
        self.clock = clock
        self.slice = slice_
        self._last: float | None = None
        self._unfinished = False  # the last tick left images for the next

    def tick(self) -> bool:
        """Run (or go on with) the pass if it is due; True when it ran. Never raises: the
        node keeps going."""
        now = self.clock()
        if not self._unfinished and self._last is not None and now - self._last < self.interval:
            return False
        if not self._unfinished:
            self._last = now
        self._unfinished = False
        try:
            from django.db import close_old_connections

            close_old_connections()  # (one a database restart ended is not used again)
            self._unfinished = self._pass(time.monotonic() + self.slice)
        except Exception as exc:  # noqa: BLE001 - an outage now is retried at the next pass
            log.warning("linking pass failed (%s); retried in %.0f s", type(exc).__name__,
                        self.interval)
        return True

    @staticmethod
    def _pass(deadline: float) -> bool:
        """One slice of the pass; True when images are left for the next slice."""
        from .linking import link_known

        done = link_known(deadline)
        if done.linked or done.refused:
            log.info("linking pass: %d waiting image(s) linked, %d refused%s", done.linked,
                     done.refused, f", {done.deferred} left for the next second"
                     if done.deferred else "")
        if done.failed:
            log.warning("linking pass: %d waiting image(s) could not be linked: %s", done.failed,
                        done.why or "see the log above")
        if done.claimed_elsewhere and not done.deferred:  # (once a pass, not each slice)
            log.info("linking pass: %d waiting image(s) held by another process linking them "
                     "(an import or an upload) that still runs", done.claimed_elsewhere)
        return done.deferred > 0
