"""'nccid deid check' over a tree counts the files it has checked on a terminal's standard
error; its report and exit code are the same with or without the bar."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from nccid.cli import common
from nccid.cli.main import typer_app
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people


def _check(monkeypatch, terminal: bool, folder):
    stderr = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=stderr, force_terminal=terminal,
                                                       width=120))
    result = CliRunner().invoke(typer_app, ["deid", "check", str(folder)])
    return result.exit_code, result.stdout, stderr.getvalue()


def test_deid_check_of_a_tree_draws_a_bar_on_a_terminal_only(monkeypatch, tmp_path):
    for n, person in enumerate(people(3, seed=4)):
        (tmp_path / "sub").mkdir(exist_ok=True)
        (tmp_path / "sub" / f"{n}.dcm").write_bytes(to_bytes(synthetic_instance(person, plant=True)))
    (tmp_path / "notes.txt").write_text("not DICOM")
    piped = _check(monkeypatch, False, tmp_path)
    on_terminal = _check(monkeypatch, True, tmp_path)
    assert piped[0] == on_terminal[0] == 1 and piped[1] == on_terminal[1]
    assert "3 DICOM or header JSON file(s) checked, 1 other file(s) skipped" in piped[1]
    assert piped[2] == ""
    assert "Checking files" in on_terminal[2] and "4/" in on_terminal[2]
