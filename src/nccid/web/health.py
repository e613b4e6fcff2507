"""``/healthz``: whether this portal instance can serve, for load balancers and monitoring.

Open to anyone (a balancer has no account) and so it says only which part failed, never why:
an error message could name a host, a path or a credential. Details go to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

log = logging.getLogger("nccid.web.health")


def _database(alias: str) -> Callable[[], None]:
    def check() -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    return check


# Seconds an object store may take to say its bucket is there: a store that hangs must not
# hold a portal worker (nor the balancer's probe) for the storage timeout and its retries.
WAREHOUSE_WITHIN = 3.0


def _warehouse() -> None:
    from nccid.warehouse.service import get_warehouse

    # the bucket on S3 (a prefix with no object yet "does not exist"), the folder on a disk
    get_warehouse().check_answers(within=WAREHOUSE_WITHIN)


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database("default"),
    "vault": _database("vault"),
    "warehouse": _warehouse,
}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 and every part "ok", or 503 naming the parts that failed."""
    parts = {}
    for name, check in CHECKS.items():
        try:
            check()
            parts[name] = "ok"
        except Exception:  # noqa: BLE001 - any failure means this instance cannot serve
            log.exception("health check: %s failed", name)
            parts[name] = "failing"
    healthy = all(state == "ok" for state in parts.values())
    return JsonResponse({"status": "ok" if healthy else "failing", **parts},
                        status=200 if healthy else 503)
