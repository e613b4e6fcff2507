"""Commands of the identity part: ``nccid link`` and ``nccid vault reveal``."""

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
