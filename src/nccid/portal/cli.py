"""``nccid serve``: the portal and API behind a production WSGI server (gunicorn)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from nccid.cli.common import UserError, console, require_free_port, setup_django


def _check_initialised() -> None:
    """Refuse to serve an installation 'nccid init' has not prepared (key file, migrations)."""
    from nccid.config import get_settings

    settings = get_settings()
    setup_django()
    if not settings.key_file.exists():
        from nccid.identity.service import installation_has_data

        if installation_has_data():  # 'nccid init' refuses here: it never makes a key over data
            raise UserError(f"key file {settings.key_file} is missing but this installation "
                            "already holds data made with a key: restore the key file from "
                            "backup (see docs/keys.md)")
        raise UserError(f"no key file at {settings.key_file}: run 'nccid init' first")
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    for alias in (DEFAULT_DB_ALIAS, "vault"):
        executor = MigrationExecutor(connections[alias])
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise UserError(f"the {alias} database is not up to date: run 'nccid init' first")


def _collect_static() -> None:
    """Copy static files under NCCID_HOME so WhiteNoise serves them with long cache headers."""
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        # a worker silent this long is restarted (gthread: a long request does not count; the
        # reverse proxy's proxy_read_timeout is what bounds a request, docs/portal.md)
        "timeout": 120,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": "-",
        # a query string (or a Referer's) holds what was typed in a search box, an NHS number
        # sometimes: the access log keeps paths only
        "logger_class": "nccid.portal.accesslog.PathOnlyAccessLogger",
        "errorlog": "-",
        "loglevel": "info",
        "forwarded_allow_ips": os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        "proc_name": "nccid-portal",
        # gunicorn's control socket defaults to one path per user: several portals (tests,
        # staging) on one machine would fight over it. It is not needed here.
        "control_socket_disable": True,
    }


def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default: portal_host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default: portal_port).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads per worker.")] = 4,
) -> None:
    """Serve the portal and API with gunicorn (gthread workers) and WhiteNoise static files."""
    from gunicorn.app.base import BaseApplication

    from nccid.cli.system import refuse_added_to_demo_home
    from nccid.config import get_settings

    _check_initialised()
    refuse_added_to_demo_home()
    settings = get_settings()
    host = host or settings.portal_host
    port = settings.portal_port if port is None else port  # --port 0 is refused, not the default
    require_free_port(host, port, "portal", "--port")
    _collect_static()
    options = gunicorn_options(host, port, workers, threads)

    class PortalServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from nccid.web.wsgi import application

            return application

    console.print(f"Portal on http://{options['bind']}/ ({workers} worker(s) × {threads} thread(s))")
    PortalServer().run()


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
    app.command("serve")(serve)
