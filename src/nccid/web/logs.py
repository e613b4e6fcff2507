"""How log lines are stamped: in UTC, ISO 8601 with a Z, as the CLI gives times.

Python's default stamp is local time without an offset, and Django sets the process's zone to
Europe/London: lines were an hour off the CLI's UTC times in summer, and the hour repeated
when the clocks go back in October could not be put in order.
"""

from __future__ import annotations

import logging
import time


class UTCFormatter(logging.Formatter):
    """``%(asctime)s`` as ``2026-05-31T23:30:00.123Z``."""

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"
