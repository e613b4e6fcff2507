"""This process as what it leaves behind names it (the waiting images' temporaries, linking
claims, the warehouse's writing journals), and whether a process so named still runs: what a
killed process left is cleaned up at once on its own host, and judged by its age elsewhere.
Light on purpose: no Django."""

from __future__ import annotations

import hashlib
import os
import socket

# This host, as names carry it: a hash (a host name may say whose machine it is).
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def this_process() -> str:
    """This process as its temporaries and its claims name it: host.pid."""
    return f"{HOST}.{os.getpid()}"


def pid_runs(pid: int) -> bool:
    """Whether a process of this host has that pid (another user's counts: it runs)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # (no process can have too big a number)
        return False
    except PermissionError:  # alive: another user's process
        return True
    return True


def process_gone(process: str) -> bool:
    """``process`` (``this_process()`` of some process) names one of this host that no longer
    runs. Another host's, or a name without a host, is not known dead: judged by its age."""
    host, _, pid = process.partition(".")
    return host == HOST and pid.isdigit() and not pid_runs(int(pid))
