"""System-wide commands: ``init``, ``config show``, ``run`` and ``manage``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Annotated

import typer

from nccid.config import get_settings

from .common import UserError, console, require_free_port, setup_django

config_app = typer.Typer(help="Effective settings.", no_args_is_help=True)


def initialise(demo: bool = False, quiet: bool = False) -> None:
    """Create the data directory, databases, key file and warehouse. Safe to run again."""
    settings = get_settings()
    for folder in (settings.home, settings.log_dir, settings.pending_dir):
        folder.mkdir(parents=True, exist_ok=True)
    setup_django(check_key=False)
    from django.core.management import call_command

    from nccid.identity.keys import KeyFileError, create_key_file
    from nccid.identity.service import (
        check_installation_key,
        installation_has_data,
        record_installation_key,
    )

    verbosity = 0
    call_command("migrate", database="default", verbosity=verbosity, interactive=False)
    call_command("migrate", database="vault", verbosity=verbosity, interactive=False)
    if not settings.key_file.exists():
        if installation_has_data():  # never a silent new key over existing data
            raise KeyFileError(
                f"key file {settings.key_file} is missing but this installation already holds "
                "data made with a key: restore the key file from backup (see docs/keys.md)"
            )
        create_key_file(settings.key_file)
        if not quiet:
            console.print(f"Created key file {settings.key_file} (mode 0600): back it up now.")
    record_installation_key()
    check_installation_key()
    from nccid.warehouse.service import get_warehouse

    get_warehouse().ensure()
    if demo:
        from nccid.demo import load_demo

        load_demo(console=None if quiet else console)
    if not quiet:
        console.print(f"Initialised nccid in {settings.home}")


def init(
    demo: Annotated[bool, typer.Option("--demo", help="Also load synthetic demo sites, accounts and data.")] = False,
) -> None:
    """Create the database, key file and warehouse (idempotent; never replaces a key)."""
    initialise(demo=demo)


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings, secrets masked."""
    console.print_json(json.dumps(get_settings().masked()))


def run(
    host: Annotated[str | None, typer.Option("--host", help="Address the portal listens on (default: portal_host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="The portal's port (default: portal_port).")] = None,
    node_port: Annotated[int | None, typer.Option("--node-port", help="The DICOM node's port (default: node_port).")] = None,
) -> None:
    """Initialise with demo data if new, then run the portal and the DICOM node together."""
    settings = get_settings()
    host, port = host or settings.portal_host, port or settings.portal_port
    node_port = node_port or settings.node_port
    require_free_port(host, port, "portal", "--port")
    require_free_port(settings.node_host, node_port, "DICOM node", "--node-port")
    initialise(demo=True)
    exe = [sys.executable, "-m", "nccid.cli.main"]
    portal = exe + ["serve", "--host", host, "--port", str(port)]
    node = exe + ["node", "--port", str(node_port)]
    children = [subprocess.Popen(portal), subprocess.Popen(node)]
    console.print(f"Portal: http://{host}:{port}/  DICOM node: AE title {settings.node_ae_title} "
                  f"on port {node_port}. Ctrl-C stops both.")

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            try:
                children[0].wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for child in children:
            child.wait()
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    if failed:
        raise UserError("a service stopped unexpectedly; see the messages above")


def manage(ctx: typer.Context) -> None:
    """Run a Django management command (e.g. 'nccid manage createsuperuser')."""
    setup_django(check_key=False)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["nccid manage", *ctx.args])


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(config_app, name="config")
    app.command("run")(run)
    app.command("manage", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                add_help_option=False)(manage)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nccid.web.settings")
