"""``nccid images import`` draws its bar (bytes and files) on a terminal's standard error only:
in a pipe or a cron job's log there is none, and standard output is the same either way."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from nccid.cli import common
from nccid.cli.main import typer_app

from .conftest import write_study

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _import(monkeypatch, terminal: bool, folder) -> tuple[str, str]:
    """(standard output, what reached the error console)."""
    stderr = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=stderr, force_terminal=terminal,
                                                       width=120))
    result = CliRunner().invoke(typer_app, ["images", "import", "--site", "RTEST", str(folder)])
    assert result.exit_code == 0, result.output
    return result.stdout, stderr.getvalue()


def test_the_import_bar_is_drawn_on_a_terminal_and_not_in_a_pipe(site, tmp_path, monkeypatch,
                                                                 person_factory):
    person = person_factory(66)
    write_study(tmp_path / "in", person, count=2, patient_id=person.nhs_number)
    piped_out, piped_err = _import(monkeypatch, False, tmp_path / "in")
    terminal_out, terminal_err = _import(monkeypatch, True, tmp_path / "in")
    assert piped_err == ""
    assert "Importing" in terminal_err and "2 files" in terminal_err
    assert "stored    │ 2" in piped_out and "duplicate │ 2" in terminal_out
