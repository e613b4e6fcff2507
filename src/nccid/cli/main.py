"""Entry point: ``nccid``. Assembles each part's commands and turns user errors into one line."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import typer

from nccid.accounts import cli as accounts_cli
from nccid.clinical import cli as clinical_cli
from nccid.identity import cli as identity_cli
from nccid.imaging import cli as imaging_cli
from nccid.portal import cli as portal_cli
from nccid.research import cli as research_cli
from nccid.warehouse import cli as warehouse_cli
from nccid.withdrawal import cli as withdrawal_cli

from . import system
from .common import UserError, fail, first_line

typer_app = typer.Typer(
    name="nccid",
    help="National COVID-19 Chest Imaging Database: intake, de-identification and research access.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (system, accounts_cli, identity_cli, clinical_cli, imaging_cli, warehouse_cli,
               portal_cli, research_cli, withdrawal_cli):
    module.register(typer_app)


def app() -> None:
    """Run the CLI. Known user mistakes and what the environment refuses (a database that is
    down, a folder that cannot be written, an unreachable object store) exit 1 with one line on
    stderr; any other exception is a bug and keeps its traceback."""
    from nccid.config import ConfigError
    from nccid.identity.keys import KeyFileError

    try:
        typer_app()
    except (UserError, ConfigError, KeyFileError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except Exception as exc:
        if not _is_environment_error(exc):
            raise
        fail(environment_message(exc))


def _is_environment_error(exc: Exception) -> bool:
    import dj_database_url
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError

    from nccid.warehouse.storage import StorageError

    kinds = [DatabaseError, ImproperlyConfigured, dj_database_url.ParseError,
             dj_database_url.UnknownSchemeError, StorageError, OSError]
    try:  # the object store's own errors (endpoint unreachable, access denied)
        from botocore.exceptions import BotoCoreError, ClientError

        kinds += [BotoCoreError, ClientError]
    except ImportError:
        pass
    return isinstance(exc, tuple(kinds))


def environment_message(exc: Exception) -> str:
    """One line: the OS's reason and the path for a file-system error, else the first line of
    the message, with any database password from the settings masked."""
    from nccid.config import get_settings

    if isinstance(exc, OSError) and exc.strerror:
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        message = f"{exc.strerror}: {paths}" if paths else exc.strerror
    elif type(exc).__module__.startswith("botocore"):
        message = f"the warehouse's object store (storage_url) answered: {first_line(exc)}"
    else:
        message = first_line(exc)
    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 - the settings themselves may be what failed
        return message
    for url in (settings.database_url, settings.vault_database_url, settings.storage_url):
        password = urlsplit(url).password
        if password:
            message = message.replace(password, "****")
    return message


if __name__ == "__main__":
    sys.exit(app())
