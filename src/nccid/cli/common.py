"""Helpers every command uses: Django start-up with the key check, and user-facing errors."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """A mistake the user can fix: printed as one line on stderr, exit status 1, no traceback."""


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 image``, ``3 images``, ``2 studies``: a count with its noun in the right number."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def require_free_port(host: str, port: int, what: str, option: str) -> None:
    """Fail with one clear line when ``host:port`` is taken, before anything starts on it
    (gunicorn would retry for seconds, then exit with its own messages)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(address)
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror} "
                            f"(is nccid already running? stop it, or choose another port with "
                            f"{option})") from None


def fail(message: str, code: int = 1) -> NoReturn:
    # Escaped: a message may hold brackets ("[storage_options]") that Rich would eat as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise SystemExit(code)


_django_ready = False


def setup_django(check_key: bool = True) -> None:
    """Start Django once; unless told otherwise, refuse to run with a missing or wrong key."""
    global _django_ready
    if not _django_ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nccid.web.settings")
        import django

        django.setup()
        _django_ready = True
    if check_key:
        from django.db import DatabaseError

        from nccid.identity.service import check_installation_key

        try:
            check_installation_key()
        except DatabaseError as exc:
            # Not migrated, or the server is unreachable: say so without a traceback.
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(
                f"the database is not ready ({first_line}): run 'nccid init', "
                "or check DATABASE_URL / VAULT_DATABASE_URL ('nccid config show')"
            ) from exc


def read_password(password_stdin: bool, prompt: str = "Password") -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        import typer

        password = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    if not password:
        raise UserError("the password is empty")
    return password
