"""warehouse catalogue / verify --all / sync-clinical show a bar on a terminal's standard error
(verify and sync-clinical count what they have done of how many); their standard output and
exit codes are the same with or without one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from nccid.cli import common
from nccid.cli.main import typer_app
from nccid.warehouse.service import store_image

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _run_on(monkeypatch, terminal: bool, *args):
    """(exit code, standard output, what reached the error console)."""
    stderr = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=stderr, force_terminal=terminal,
                                                       width=120))
    result = CliRunner().invoke(typer_app, ["warehouse", *args])
    return result.exit_code, result.stdout, stderr.getvalue()


def test_long_warehouse_commands_draw_a_bar_on_a_terminal_only(monkeypatch, site, local_warehouse,
                                                                make_image):
    stored = [store_image(site, *make_image(i, "DX", instance=i)).record for i in range(1, 4)]
    code, _, bar = _run_on(monkeypatch, True, "catalogue")
    assert code == 0 and "Refreshing the catalogue" in bar
    local_warehouse.delete(stored[0].storage_key)  # verify's exit code 1 is kept
    piped = _run_on(monkeypatch, False, "verify", "--all")
    on_terminal = _run_on(monkeypatch, True, "verify", "--all")
    assert piped[0] == on_terminal[0] == 1 and piped[1] == on_terminal[1]
    assert "checked 3 image(s): 1 missing" in piped[1]
    assert piped[2] == "" and "Re-hashing images" in on_terminal[2] and "3/3" in on_terminal[2]
    _clinical_records(site, [make_image(i)[0] for i in (5, 6)])
    code, out, bar = _run_on(monkeypatch, True, "sync-clinical")
    assert code == 0 and "wrote 2 clinical record(s)" in out
    assert "Writing clinical records" in bar and "2/2" in bar


def _clinical_records(site, pseudonyms: list[str]) -> None:
    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind="positive", sha256="1" * 64)
    for pseudonym in pseudonyms:
        ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                      cleaned={"age": 70}, digest="d", last_upload=upload)
