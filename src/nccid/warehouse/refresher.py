"""A catalogue kept current by a long-running process: ``nccid run`` (the demo, all in one)
has no scheduled ``nccid warehouse catalogue``, so images and clinical records sent to it
would stay out of researchers' sight. A thread checks every ``REFRESH_EVERY`` seconds (one or
two small queries) and refreshes the catalogue when something arrived since its last refresh;
otherwise it runs the refresh's upkeep alone (checks expiring, clinical JSON an upload left
unwritten). A real installation runs the refresh as a scheduled job instead (README, "Scheduled jobs")."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from django.db import connections

log = logging.getLogger("nccid.warehouse")
REFRESH_EVERY = 60  # seconds
# A clinical record saved shortly before a refresh may have committed after the refresh read
# the table: records changed this long before the last refresh still count as new.
COMMIT_MARGIN = timedelta(seconds=REFRESH_EVERY)


def catalogue_behind() -> bool:
    """Images stored since the last refresh, or clinical records changed since (shortly
    before) it."""
    from .catalogue import catalogue_updated_at
    from .service import clinical_changed_since, uncatalogued_images

    if uncatalogued_images():
        return True
    return clinical_changed_since(catalogue_updated_at(), COMMIT_MARGIN).exists()


class CatalogueRefresher(threading.Thread):
    """Refreshes the catalogue when it is behind, every ``every`` seconds, until ``stop()``.
    A failed refresh is logged and tried again at the next pass: it never stops the process."""

    def __init__(self, every: float = REFRESH_EVERY) -> None:
        super().__init__(name="catalogue-refresher", daemon=True)
        self.every = every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.refresh_if_behind()
            finally:
                connections.close_all()  # this thread's own; a database restart is survived

    def refresh_if_behind(self) -> dict | None:
        """The refresh's counts, or None when nothing was new (or the refresh failed)."""
        from nccid.clinical.services import expire_checks

        from .catalogue import refresh_catalogue
        from .service import write_owed_clinical_json

        try:
            if not catalogue_behind():
                expire_checks()  # the refresh's upkeep, due even when nothing arrived
                write_owed_clinical_json()
                return None
            result = refresh_catalogue()
        except Exception as exc:  # noqa: BLE001 - an outage of the store or a database
            log.warning("catalogue not refreshed (tried again in %d s): %s", self.every, exc)
            return None
        log.info("catalogue refreshed: version %d, %d new image(s)", result["version"],
                 result["new_images"])
        return result

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the refresh under way, if any (its state is written last: a process
        killed during it leaves the previous version)."""
        self.stopped.set()
        if self.is_alive():
            self.join(timeout)
