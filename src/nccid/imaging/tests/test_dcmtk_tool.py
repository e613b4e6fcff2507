"""The tests send with dcmtk's storescu even where pynetdicom's script of the same name comes
first on PATH (an activated virtualenv)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nccid.imaging.dcmtk import dcmtk_tool


def test_dcmtk_storescu_is_found_past_the_environments_own_script(monkeypatch):
    ours = Path(sys.executable).parent
    assert (ours / "storescu").exists()  # pynetdicom's console script, other options
    monkeypatch.setenv("PATH", f"{ours}:/usr/local/bin:/usr/bin:/bin")

    tool = dcmtk_tool("storescu")

    assert Path(tool).parent != ours
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
    assert "OFFIS" in version.stdout or "dcmtk" in version.stdout.lower()
