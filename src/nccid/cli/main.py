"""Entry point: ``nccid``. Assembles each part's commands and turns user errors into one line."""

from __future__ import annotations

import sys

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
from .common import UserError, fail

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
    """Run the CLI; known user mistakes exit 1 with a message on stderr and no traceback."""
    from nccid.config import ConfigError
    from nccid.identity.keys import KeyFileError

    try:
        typer_app()
    except (UserError, ConfigError, KeyFileError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)


if __name__ == "__main__":
    sys.exit(app())
