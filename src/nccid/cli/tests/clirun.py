"""Run the ``nccid`` CLI in-process (same session settings and test database) or as a process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_text(self) -> str:
        """stderr with Rich's line wrapping undone, for substring checks."""
        return " ".join(self.err.split())


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> CliResult:
    """``nccid ARGS`` through the real entry point (``nccid.cli.main.app``), in this process."""
    from nccid.cli.main import app

    out, err = io.StringIO(), io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "argv", ["nccid", *args])
        patch.setattr(sys, "stdin", io.StringIO(stdin))
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        try:
            app()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


def run_nccid(*args: str, stdin: str = "", env: dict | None = None, timeout: float = 120) -> CliResult:
    """``nccid ARGS`` as a separate process (environment inherited, e.g. from ``nccid_home``)."""
    merged = {**os.environ, "COLUMNS": "200", **(env or {})}
    if "NCCID_HOME" in (env or {}):
        # A home of its own means the embedded defaults, whatever the session runs on.
        for name in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL", "NCCID_CONFIG"):
            merged.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "nccid.cli.main", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env=merged,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
