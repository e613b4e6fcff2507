"""One progress bar for long CLI work: on standard error, and drawn only on a terminal, so what
scripts and pipes read (standard output, exit codes) is the same with or without it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """What long work reports to: steps done, and the total once it is known."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def advance(self, steps: int = 1) -> None:
        self._progress.advance(self._task, steps)

    def reached(self, done: int, total: int | None = None) -> None:
        self._progress.update(self._task, completed=done, total=total)


@contextmanager
def progress_bar(description: str, total: int | None = None, *, counted: bool = True
                 ) -> Iterator[Bar]:
    """A bar counting steps (``total`` None until known), or with ``counted`` False a pulse and
    the time taken, for work done where it cannot be counted. Gone when the work ends."""
    from nccid.cli import common  # looked up now: tests swap in a terminal console

    console = common.err_console
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn()]
    columns += ([MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()] if counted
                else [TimeElapsedColumn()])
    with Progress(*columns, console=console, disable=not console.is_terminal,
                  transient=True) as progress:
        yield Bar(progress, progress.add_task(description, total=total))
