"""The node while the folder of waiting images (pending_dir) cannot be written, the warehouse
working: images of a patient with no record yet fail for the folder's outage, not on their
own. They stay in the spool (and so everything after them), are never quarantined, and once
the folder works again they wait there for their record; the log names pending_dir."""

from __future__ import annotations

import logging

import pytest

from nccid.config import reset_settings_cache
from nccid.imaging import node
from nccid.imaging.models import PendingImage, StudyReceipt
from nccid.imaging.spool import Spool, quarantined
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

from .test_linking_resumes_after_a_store_outage import _sheet_confirmed

pytestmark = pytest.mark.django_db(databases=["default", "vault"], transaction=True)

STEPS_DURING_THE_OUTAGE = 6  # the old drain quarantined the first waiting image in its 2nd


def test_images_failing_for_a_pending_folder_outage_wait_in_the_spool_never_quarantined(
        site, keyring, person_factory, local_warehouse, monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")  # pending_dir under a file: every write fails (for root too)
    monkeypatch.setenv("NCCID_PENDING_DIR", str(blocker / "pending"))
    reset_settings_cache()
    waiting, known = person_factory(84), person_factory(85)
    _sheet_confirmed(site, keyring, known)
    spool = Spool(tmp_path / "spool", keyring)
    for person, study, count in ((waiting, 1, 2), (known, 2, 3)):
        for i in range(1, count + 1):
            spool.append(site.code, "node", to_bytes(synthetic_instance(
                person, study=study, instance=i, plant=False)))
    drain = node.Drain(spool)
    pauses: list[tuple[int, float]] = []

    def pause(seconds: float) -> bool:  # the drain's backoff, recorded instead of waited
        pauses.append((spool.backlog().records, seconds))
        return False

    monkeypatch.setattr(drain._stop, "wait", pause)
    with caplog.at_level(logging.WARNING, logger="nccid.imaging.node"):
        for _ in range(STEPS_DURING_THE_OUTAGE):
            drain._step()

    assert quarantined(spool.directory) == []
    assert spool.backlog().records == 5  # the waiting images, and everything after them
    assert pauses and all(left == 5 for left, _ in pauses)
    assert [seconds for _, seconds in pauses][:8] == [1, 2, 4, 8, 16, 32, 60, 60]
    said = [r.getMessage() for r in caplog.records if r.name == "nccid.imaging.node"]
    assert said and all("pending_dir" in m and "warehouse" not in m for m in said)
    assert not StudyReceipt.objects.filter(study_uid=node.QUARANTINED_STUDY).exists()
    assert PendingImage.objects.count() == 0

    monkeypatch.setenv("NCCID_PENDING_DIR", str(tmp_path / "pending"))  # the disk is back
    reset_settings_cache()
    for _ in range(3):
        drain._step()
        if not spool.backlog().records:
            break

    assert spool.backlog().records == 0
    assert quarantined(spool.directory) == []
    assert PendingImage.objects.count() == 2  # kept, waiting for their record
    assert ImageRecord.objects.count() == 3  # stored once (retries came back duplicates)
    assert drain._tallies[site.code]["pending"] == 2
    assert "quarantined" not in drain._tallies[site.code]
    assert all(r.rejected == 0 for r in StudyReceipt.objects.all())
    spool.close()
    reset_settings_cache()
