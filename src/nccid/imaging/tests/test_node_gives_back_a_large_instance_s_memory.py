"""The node's memory goes back to the system once a large instance is answered: freed, its
PDU buffers stayed with the process (a 600 MB multiframe left the receiving process at
650 MB for good; one of 300 MB after it, at 950 MB)."""

from __future__ import annotations

import gc
import subprocess

import pytest

from nccid.imaging import fastpath
from nccid.imaging.dcmtk import dcmtk_tool
from nccid.synthetic.dicom import synthetic_instance, to_bytes

STORESCU = dcmtk_tool("storescu")  # dcmtk's: PDUs of 128 KB, as a PACS sends them
on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])
MB = 1024 * 1024
SIZE = 96 * MB  # well past GIVE_BACK_BYTES


def _anonymous_memory() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.fixture
def spooling_only(monkeypatch):
    """The node only receives (no drain here: what is measured is the receiving side's)."""
    from nccid.config import reset_settings_cache

    monkeypatch.setenv("NCCID_NODE_DRAIN", "false")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def _instance(folder, person, study: int, size: int):
    ds = synthetic_instance(person, modality="CR", study=study, rows=32, columns=32,
                            patient_id=person.nhs_number)
    ds.Rows, ds.Columns = 4096, size // (4096 * 2)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel = 16, 12, 11, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(size)
    path = folder / f"{study}.dcm"
    path.write_bytes(to_bytes(ds))
    return path


def _send(port: int, path) -> None:
    sent = subprocess.run([STORESCU, "-aet", "RTEST_PACS", "-aec", "NCCID", "127.0.0.1",
                           str(port), str(path)], capture_output=True, timeout=120)
    assert sent.returncode == 0, sent.stderr


@on_a_node
def test_a_large_instance_s_memory_goes_back_once_answered(spooling_only, node, site,
                                                           tmp_path, person_factory):
    person = person_factory(41)
    small, large = _instance(tmp_path, person, 1, 2 * MB), _instance(tmp_path, person, 2, SIZE)
    gc.collect()
    budget = fastpath.node_budget()
    _send(node.port, small)  # the node's first association: what any first one costs, once
    assert budget.wait_until(lambda b: b.total == 0 and b.spares == 0, 20)  # association over
    before = _anonymous_memory()
    _send(node.port, large)
    assert node.server.spool_backlog().records == 2  # acknowledged: in the spool
    assert budget.wait_until(lambda b: b.total == 0 and b.spares == 0, 20)
    kept = _anonymous_memory() - before
    assert kept < 12 * MB, f"the node kept {kept / MB:.0f} MB after a {SIZE / MB:.0f} MB instance"
