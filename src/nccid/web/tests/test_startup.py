"""What every process pays to start: the DICOM node and its worker set Django up too."""

from __future__ import annotations

import os
import subprocess
import sys


def test_setting_django_up_loads_neither_the_api_framework_nor_pydantic(nccid_key_file):
    # In a fresh interpreter: this test process has imported everything already.
    code = ("import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'nccid.web.settings'; "
            "django.setup(); print(sorted(m for m in ('ninja', 'pydantic') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=os.environ | {"NCCID_HOME": str(nccid_key_file.parent)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
