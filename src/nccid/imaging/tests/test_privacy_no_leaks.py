"""The privacy test: identifiers planted everywhere, imported by node and by folder, then no
byte written anywhere (node spool, warehouse, catalogue, databases, pending, logs) holds any
of them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from nccid.imaging.dcmtk import dcmtk_tool
from nccid.imaging.spool import spool_backlog
from nccid.synthetic.dicom import original_uid, synthetic_instance, to_bytes
from nccid.synthetic.leakscan import find_leaks
from nccid.synthetic.people import people

from .conftest import free_port, wait_for_port
from .planting import plant_everywhere

STORESCU = dcmtk_tool("storescu")  # dcmtk's, not pynetdicom's script of that name

NCCID = [sys.executable, "-m", "nccid.cli.main"]


def _write(folder, person, *, pending: bool, modality: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    needles = []
    for instance in (1, 2):
        ds = synthetic_instance(person, modality=modality, instance=instance, plant=True)
        needles += plant_everywhere(ds, person)
        # NHS number in Other Patient IDs: linked at once; without it the image must wait.
        ds.OtherPatientIDs = "" if pending else person.nhs_number
        needles += [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                    str(ds.FrameOfReferenceUID), original_uid(person, 9, 9, 9)]
        (folder / f"{person.family_name}-{instance}.dcm").write_bytes(to_bytes(ds))
    return needles


@contextlib.contextmanager
def _running_node(log, **env):
    """``nccid node`` as a subprocess on a free port; stopped by SIGTERM on leaving."""
    port = free_port()
    node = subprocess.Popen([*NCCID, "node", "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        wait_for_port(port, timeout=60, process=node)
        yield port
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
    assert node.returncode == 0


@pytest.mark.dcmtk
def test_planted_identifiers_never_reach_any_byte_written(nccid_home, tmp_path):
    crowd = [p for p in people(12, seed=8) if p.birth_date.strftime("%m%d") != "0101"][:8]
    needles: list[str] = []
    by_node, by_folder = tmp_path / "node", tmp_path / "folder"
    for i, person in enumerate(crowd):
        target = by_node if i % 2 == 0 else by_folder
        needles += _write(target / person.family_name, person, pending=i in (2, 3),
                          modality="DX" if i % 3 else "CT")
        needles += person.identifiers()

    run = dict(check=True, capture_output=True, text=True, timeout=180)
    subprocess.run([*NCCID, "init"], **run)
    subprocess.run([*NCCID, "site", "add", "PRIV", "--name", "Privacy Test Hospital",
                    "--ae-title", "PRIV_PACS"], **run)
    # The node first runs with its drain paused, so the spool's bytes can be scanned while it
    # holds every file sent; then again with the drain on, until the spool is empty.
    node_log = open(nccid_home / "logs" / "node-console.log", "w")
    spool = nccid_home / "spool"
    with _running_node(node_log, NCCID_NODE_DRAIN="false") as port:
        sent = subprocess.run([STORESCU, "-aet", "PRIV_PACS", "-aec", "NCCID", "+sd", "+r",
                               "127.0.0.1", str(port), str(by_node)],
                              env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True,
                              text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
    assert spool_backlog(spool).records == 8
    spooled_leaks = find_leaks([spool], needles)
    assert not spooled_leaks, "\n".join(spooled_leaks[:40])
    with _running_node(node_log):
        deadline = time.monotonic() + 120
        while spool_backlog(spool).records and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval of a bounded wait on another process
        assert spool_backlog(spool).records == 0
    node_log.close()
    imported = subprocess.run([*NCCID, "images", "import", "--site", "PRIV", str(by_folder)],
                              capture_output=True, text=True, timeout=180)
    (nccid_home / "logs" / "import-console.log").write_text(imported.stdout + imported.stderr)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    catalogue = ("from nccid.cli.common import setup_django; setup_django(); "
                 "from nccid.warehouse.service import refresh_catalogue; refresh_catalogue()")
    subprocess.run([sys.executable, "-c", catalogue], **run)

    import sqlite3

    db = sqlite3.connect(nccid_home / "nccid.sqlite3")
    stored = db.execute("select count(*) from warehouse_imagerecord").fetchone()[0]
    pending = db.execute("select count(*) from imaging_pendingimage").fetchone()[0]
    held = db.execute("select count(*) from imaging_heldimage").fetchone()[0]
    db.close()
    assert (stored, pending, held) == (12, 4, 0), imported.stdout  # 6 people stored by NHS number, 2 waiting
    written = [p for p in nccid_home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".dcm" for p in written) and any(p.suffix == ".pending" for p in written)
    assert any("catalogue" in p.parts for p in written)
    assert len(find_leaks([by_node, by_folder], needles)) > 100  # the needles are really there
    leaks = find_leaks([nccid_home], needles)
    assert not leaks, "\n".join(leaks[:40])
