"""Every command and every option of ``nccid`` says what it is for in ``--help``."""

from __future__ import annotations

from typer.main import get_command

from nccid.cli.main import typer_app


def _leaves(command, path: tuple[str, ...] = ("nccid",)):
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from _leaves(sub, (*path, name))


def test_every_command_and_option_has_help():
    missing = []
    leaves = list(_leaves(get_command(typer_app)))
    for path, command in leaves:
        if not command.help:
            missing.append(" ".join(path))
        for param in command.params:
            is_option = type(param).__name__.endswith("Option")
            if is_option and param.name != "help" and not getattr(param, "help", None):
                missing.append(f"{' '.join(path)} {'/'.join(param.opts)}")
    assert len(leaves) > 40  # the whole tree was walked
    assert not missing, "no help text: " + ", ".join(missing)
