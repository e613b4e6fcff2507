"""Commands of the portal part."""

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
