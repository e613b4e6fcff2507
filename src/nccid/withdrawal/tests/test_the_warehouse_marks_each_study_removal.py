"""The warehouse keeps a marker of each study removal (``withdrawn/studies/<StudyUID>.json``:
the date only, the stored UID in its name), so a database restored from an older backup cannot
forget it: written by the removal, written by ``nccid init`` for removals made before markers
existed, read by intake while the database lacks the removal, and never taken for a withdrawn
patient's marker nor read as research data."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.layout import study_removal_marker_key
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import get_warehouse
from nccid.warehouse.upgrade import upgrade_warehouse
from nccid.withdrawal.markers import differences, marked, marked_studies, write_study_marker
from nccid.withdrawal.models import StudyWithdrawal
from nccid.withdrawal.services import (
    STUDY_REFUSAL,
    remove_study,
    removed_studies_among,
    withdraw,
    withdrawn_among,
)

from .conftest import send_images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _study_of(patient) -> str:
    return ImageRecord.objects.get(sop_uid=patient.sop_uids[0]).study_uid


def test_a_removal_writes_its_marker_beside_the_patients_markers(patients, manager):
    warehouse = get_warehouse()
    bad = _study_of(patients[0])
    withdraw(manager, patients[1].pseudonym, "objected by letter")
    remove_study(manager, bad, "Name burned into the image")
    entry = StudyWithdrawal.objects.get(study_uid=bad)

    body = json.loads(warehouse.read(study_removal_marker_key(bad)))
    assert body == {"removed_at": entry.requested_at.isoformat()}  # no reason, no account
    assert marked_studies() == {bad}
    # the patients' markers are read as before: a study's is no withdrawn patient
    assert marked() == {patients[1].pseudonym}
    assert withdrawn_among([patients[0].pseudonym]) == set()
    assert not differences().any
    refresh_catalogue()
    con = connect_catalogue()
    assert con.execute("SELECT count(*) FROM images WHERE study_uid = ?", [bad]).fetchone() == (0,)


def test_init_marks_the_removals_of_an_older_release(local_warehouse):
    """Removals made before the warehouse kept markers get one at the upgrade."""
    old = StudyWithdrawal.objects.create(study_uid="2.25.1234567", requested_by="dm",
                                         reason="sent in error", completed_at=timezone.now())
    assert differences().studies_unmarked == [old.study_uid]

    done = upgrade_warehouse()

    assert done.study_markers_written == 1 and done.studies_reapplied == []
    assert marked_studies() == {old.study_uid}
    assert not differences().any
    assert upgrade_warehouse().study_markers_written == 0  # idempotent


def test_a_marker_the_database_lacks_refuses_the_study_until_reapplied(site, patients):
    """A database older than the removal: intake's check already refuses the study."""
    patient, other = patients
    bad = _study_of(patient)
    write_study_marker(bad, timezone.now())
    assert removed_studies_among([bad, _study_of(other)]) == {bad}
    assert set(differences().studies_unapplied) == {bad}
    again = send_images(site, patient.person, study=1, count=4)  # a fourth image, new
    assert {(o.status, o.reason) for o in again[3:]} == {("rejected", STUDY_REFUSAL)}

    done = upgrade_warehouse()

    assert done.studies_reapplied == [bad]
    entry = StudyWithdrawal.objects.get(study_uid=bad)
    assert entry.requested_by == "system" and entry.completed_at is not None
    assert not ImageRecord.objects.filter(study_uid=bad).exists()
    assert ImageRecord.objects.filter(study_uid=_study_of(other)).count() == 3
    assert not differences().any
