"""The progress bar of long CLI work: drawn on standard error when it is a terminal, never in a
pipe or a file (what scripts read stays the same)."""

from __future__ import annotations

import io

from rich.console import Console

from nccid.cli import common
from nccid.cli.progress import progress_bar


def _stderr(monkeypatch, terminal: bool) -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(common, "err_console",
                        Console(file=buffer, force_terminal=terminal, width=100))
    return buffer


def test_a_bar_is_drawn_on_a_terminal_with_the_steps_done(monkeypatch):
    drawn = _stderr(monkeypatch, terminal=True)
    with progress_bar("Checking files", total=3) as bar:
        for _ in range(3):
            bar.advance()
    assert "Checking files" in drawn.getvalue() and "3/3" in drawn.getvalue()


def test_a_total_learnt_on_the_way_is_shown(monkeypatch):
    drawn = _stderr(monkeypatch, terminal=True)
    with progress_bar("Copying images") as bar:
        bar.reached(4, 7)
    assert "4/7" in drawn.getvalue()


def test_nothing_is_written_when_standard_error_is_not_a_terminal(monkeypatch):
    written = _stderr(monkeypatch, terminal=False)
    with progress_bar("Refreshing", counted=False) as bar:
        bar.advance()
    assert written.getvalue() == ""
