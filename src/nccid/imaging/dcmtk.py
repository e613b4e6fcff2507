"""dcmtk's command-line tools by path (the tests and the bench send with ``storescu``).

pynetdicom installs console scripts of the same names (``storescu``, ``storescp``, with other
options) into the environment's bin folder, which an activated virtualenv puts first on
PATH: a bare ``storescu`` would then be pynetdicom's."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def dcmtk_tool(name: str) -> str:
    """The path of dcmtk's ``name`` on PATH, skipping this Python environment's bin folder."""
    ours = {Path(sys.executable).parent, Path(sys.prefix) / "bin"}
    ours |= {p.resolve() for p in ours}
    folders = [f for f in os.environ.get("PATH", "").split(os.pathsep)
               if f and Path(f) not in ours and Path(f).resolve() not in ours]
    return shutil.which(name, path=os.pathsep.join(folders)) or name
