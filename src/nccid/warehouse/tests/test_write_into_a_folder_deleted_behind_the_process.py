"""A folder this process wrote into, then deleted by another step (a withdrawal, a study
removal, a sweep), is made again by the next write into it: the process remembers the folders
it made, and a stale memory must not fail that write."""

from __future__ import annotations

import shutil
from pathlib import Path


def test_a_batch_writes_into_a_folder_deleted_since_the_last_batch(local_warehouse):
    key = "training/ct/P/1.2/1.2.3/1.2.3.4.dcm"
    local_warehouse.write_many({key: b"first", key.replace(".4.dcm", ".5.dcm"): b"x"})
    shutil.rmtree(Path(local_warehouse.root) / "training/ct/P")

    batch = local_warehouse.batch()
    batch.put(key, [b"again"])
    batch.publish()
    batch.discard()

    assert local_warehouse.read(key) == b"again"
