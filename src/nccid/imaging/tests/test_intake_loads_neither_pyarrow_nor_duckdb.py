"""The import and the node's worker stay small: intake's modules load neither pyarrow nor
DuckDB (about 40 MB between them, which the node's 500 MB budget has no room for; a helper
shared with the catalogue once brought both in)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_intake_modules_load_neither_pyarrow_nor_duckdb(nccid_key_file):
    # In a fresh interpreter: this test process has imported everything already.
    code = ("import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'nccid.web.settings'; "
            "django.setup(); import nccid.imaging.importer, nccid.imaging.node, "
            "nccid.imaging.intake, nccid.imaging.deps; "
            "print(sorted(m for m in ('pyarrow', 'duckdb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=os.environ | {"NCCID_HOME": str(nccid_key_file.parent)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
