"""``nccid patient relink``: a site's sheet gave a hospital number a wrong (valid) NHS number,
so its images went to the wrong patient, who sat in the training set while the real patient,
sent by another site, sat in validation; the corrected sheet could not move the link. The
relink moves the link and every image the site sent under the wrong patient: the DICOM (its
pseudonym, and its dates under ``shift-dates``), the header JSON, the keys (the right
patient's folder in the right patient's set), the rows, the receipts, the catalogue. A run
killed midway is finished by running it again, without duplicates."""

from __future__ import annotations

import json
from datetime import date, timedelta
from io import BytesIO

import pytest
from pydicom import dcmread

from nccid.synthetic.people import people

from .. import relink as relinking
from ..models import Relink
from .conftest import send_images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
STUDY_DATE = date(2020, 4, 2)  # synthetic_instance's
REASON = "NHS number typo in the site's sheet"


def _images(site, pseudonym=None):
    from nccid.warehouse.models import ImageRecord

    rows = ImageRecord.objects.filter(site=site)
    return list(rows.filter(pseudonym=pseudonym) if pseudonym else rows)


def test_the_site_s_images_move_to_the_right_patient_and_set(profile, typo, site, other_site,
                                                             manager, keyring):
    from nccid.clinical.models import PatientLink
    from nccid.imaging.models import StudyReceipt
    from nccid.warehouse.catalogue import connect_catalogue
    from nccid.warehouse.dateshift import deployment_shift
    from nccid.warehouse.models import PatientSet
    from nccid.warehouse.service import get_warehouse

    real, right, wrong = typo
    assert len(_images(site, wrong)) == 6  # the bug: both studies went to the typo patient
    right_set = PatientSet.objects.get(pseudonym=right).set_name
    assert right_set == "validation" and PatientSet.objects.get(pseudonym=wrong).set_name == "training"

    done = relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    assert (done.images, done.receipts, done.set_name) == (6, 2, "validation")
    assert done.clinical_left == ("positive",)  # the typo row's record: left to the data manager
    assert PatientLink.objects.get(site=site).pseudonym == right
    assert not _images(site, wrong)
    warehouse = get_warehouse()
    days = deployment_shift().days(right) if profile == "shift-dates" else 0
    for row in _images(site):
        assert row.pseudonym == right and row.set_name == "validation"
        assert row.storage_key.startswith(f"validation/{row.folder}/{right}/")
        data = warehouse.read(row.storage_key)
        assert (len(data), row.sha256) == (row.size, __import__("hashlib").sha256(data).hexdigest())
        ds = dcmread(BytesIO(data))
        # as if de-identified for the right patient from the start
        assert str(ds.PatientID) == str(ds.PatientName) == right
        assert ds.StudyDate == (STUDY_DATE + timedelta(days=days)).strftime("%Y%m%d")
        assert row.study_date == STUDY_DATE + timedelta(days=days)
        header = json.loads(warehouse.read(row.metadata_key))
        assert header["00100020"]["Value"] == [right]
        assert header["00080020"]["Value"] == [ds.StudyDate]
    assert not [k for k in warehouse.list("") if wrong in k and "/data/" not in k]
    assert set(StudyReceipt.objects.filter(site=site).values_list("patient", flat=True)) == {right}

    con = connect_catalogue()
    assert con.sql("select distinct pseudonym, set_name from images").fetchall() == [
        (right, "validation")]  # one real person, one set
    con.close()
    # the number's next study goes to the right patient
    assert {o.status for o in send_images(site, real, study=3, by_nhs_number=False)} == {"stored"}
    assert {r.pseudonym for r in _images(site)} == {right}


def test_a_relink_killed_midway_is_finished_by_running_it_again(typo, site, manager, monkeypatch):
    from nccid.warehouse.models import ImageRecord
    from nccid.warehouse.service import get_warehouse
    from nccid.warehouse.storage import Warehouse

    real, right, wrong = typo
    images_before = ImageRecord.objects.count()
    calls = {"deletes": 0}
    delete_many = Warehouse.delete_many

    def killed_after_the_second_row_moved(self, keys):
        calls["deletes"] += 1
        if calls["deletes"] == 2:  # the row moved, its old objects not yet deleted
            raise KeyboardInterrupt
        return delete_many(self, keys)

    monkeypatch.setattr(Warehouse, "delete_many", killed_after_the_second_row_moved)
    with pytest.raises(KeyboardInterrupt):
        relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert len(_images(site, right)) == 2 and len(_images(site, wrong)) == 4
    assert Relink.objects.get().completed_at is None
    monkeypatch.setattr(Warehouse, "delete_many", delete_many)

    plan = relinking.plan(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert plan.resuming and plan.images == 5  # the second image's old objects are still to go
    done = relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    assert done.images == 6 and ImageRecord.objects.count() == images_before
    assert Relink.objects.get().completed_at is not None
    keys = [k for k in get_warehouse().list("") if "/data/" not in k and not k.startswith("catalogue")]
    named = {key for row in ImageRecord.objects.all() for key in (row.storage_key, row.metadata_key)}
    assert sorted(keys) == sorted(named)  # no old object left, none twice


def test_what_cannot_be_relinked_is_refused(typo, site, manager, make_user, keyring):
    from nccid.withdrawal.services import withdraw

    real, right, wrong = typo
    unknown = people(3, seed=77)[2]
    for args, message in (
        (("NOPE", real.hospital_number, real.nhs_number), "no site has the code 'NOPE'"),
        ((site.code, real.hospital_number, "1234567890"), "the NHS/CHI number is not valid"),
        ((site.code, "ZZ999999", real.nhs_number), "linked to no patient at site RTEST"),
        ((site.code, real.hospital_number, unknown.nhs_number), "nothing in the database names"),
    ):
        with pytest.raises(relinking.RelinkError, match=message) as refused:
            relinking.relink(manager, *args, REASON)
        assert real.nhs_number not in str(refused.value)
        assert real.hospital_number not in str(refused.value)
    with pytest.raises(relinking.RelinkError, match="only data managers"):
        relinking.relink(make_user("uploader", site), site.code, real.hospital_number,
                         real.nhs_number, REASON)

    withdraw(manager, right, "objected")
    with pytest.raises(relinking.RelinkError, match="has been withdrawn"):
        relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert not Relink.objects.exists() and len(_images(site, wrong)) == 6


def test_a_number_already_linked_to_that_patient_is_refused(typo, site, manager):
    real, _right, _wrong = typo
    relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    with pytest.raises(relinking.RelinkError, match="already linked to that NHS/CHI number"):
        relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)


def test_the_command_never_shows_or_records_the_numbers(typo, site, manager, caplog):
    from typer.testing import CliRunner

    from nccid.accounts.models import AuditEvent
    from nccid.cli.main import typer_app

    real, right, wrong = typo
    result = CliRunner().invoke(typer_app, [
        "patient", "relink", "--site", site.code, "--hospital-number", real.hospital_number,
        "--nhs-number", real.nhs_number, "--reason", REASON, "--user", manager.username,
        "--password-stdin", "--yes"], input="Correct-Horse-Battery-9\n")
    assert result.exit_code == 0, result.output
    assert right in result.output and wrong in result.output and "positive clinical" in result.output
    audits = json.dumps(list(AuditEvent.objects.filter(action__startswith="patient.relink")
                             .values("action", "pseudonym", "reason", "detail")), default=str)
    assert '"patient.relink"' in audits
    for number in (real.nhs_number, real.hospital_number):
        assert number not in result.output and number not in caplog.text and number not in audits


def test_a_number_whose_typo_patient_was_withdrawn_is_given_back_to_the_right_one(typo, site,
                                                                                  manager):
    """The repair the documentation used to advise (withdrawing the typo patient) kept the
    link, so the real patient's every later image by that number was refused as withdrawn."""
    from nccid.withdrawal.services import withdraw

    real, right, wrong = typo
    withdraw(manager, wrong, "sheet typo")
    refused = send_images(site, real, study=4, by_nhs_number=False)
    assert {o.status for o in refused} == {"rejected"}

    done = relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    assert (done.images, done.clinical_left) == (0, ())  # the withdrawal took them
    assert {o.status for o in send_images(site, real, study=5, by_nhs_number=False)} == {"stored"}
    assert {r.pseudonym for r in _images(site)} == {right}
