"""``nccid patient relink`` moves the images the hospital number linked, by the number each
stored image records (``ImageRecord.hospital_hash``), not every image of the site under the
wrong patient: images the site sent by the wrong NHS number itself (perhaps another real
patient's) stay, and a wrong patient with a second hospital number at the site is no longer
refused. Images stored before the number was recorded move, as before (all of the site's),
only when asked (test_relink_moves_images_of_an_unrecorded_number_only_when_asked).

And a hospital number that passes the NHS/CHI check, sent before the sheet linked it, was read
as that number: its images sit under the pseudonym of the hospital number read as an NHS
number while the sheet linked it to the right patient. The relink, refused before as "already
linked", moves them and forgets that pseudonym's vault entry (the reviewer's s2/s2b)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from io import BytesIO

import pytest
from pydicom import dcmread

from nccid.imaging.linking import link_known
from nccid.synthetic.people import people

from .. import relink as relinking
from .conftest import send_images, send_sheet
from .test_relink_moves_a_hospital_number_to_the_right_patient import REASON, STUDY_DATE, _images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _wrong_patient():
    """The person whose NHS number the typo sheet gave (the typo fixture's ``other``)."""
    return people(2, seed=31)[1]


def test_images_the_site_sent_by_the_wrong_number_itself_stay(typo, site, manager):
    real, right, wrong = typo
    wrong_person = _wrong_patient()
    assert {o.status for o in send_images(site, wrong_person, study=7)} == {"stored"}
    assert len(_images(site, wrong)) == 9

    found = relinking.plan(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert (found.images, found.left) == (6, 3)
    done = relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    assert done.images == 6
    stayed = _images(site, wrong)
    assert len(stayed) == 3 and {r.hospital_hash for r in stayed} == {""}
    assert len(_images(site, right)) == 6


def test_a_wrong_patient_with_a_second_hospital_number_keeps_that_number_s_images(
        typo, site, manager, make_user, keyring):
    real, right, wrong = typo
    second = replace(_wrong_patient(), hospital_number="RTX0424242")
    send_sheet(site, make_user("uploader", site), [second])  # a second number for that patient
    assert {o.status for o in send_images(site, second, study=8, by_nhs_number=False)} == {"stored"}
    assert len(_images(site, wrong)) == 9

    done = relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    assert done.images == 6
    second_hash = keyring.hospital_hash(site.code, second.hospital_number)
    assert {r.hospital_hash for r in _images(site, wrong)} == {second_hash}
    assert {r.hospital_hash for r in _images(site, right)} == {
        keyring.hospital_hash(site.code, real.hospital_number)}


def test_images_stored_before_numbers_were_recorded_move_only_when_asked(typo, site, manager,
                                                                         make_user):
    from nccid.warehouse.models import ImageRecord

    real, right, wrong = typo
    wrong_person = _wrong_patient()
    assert {o.status for o in send_images(site, wrong_person, study=7)} == {"stored"}
    ImageRecord.objects.update(hospital_hash=None)  # as an older release stored them

    found = relinking.plan(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert (found.images, found.unrecorded_left, found.left) == (0, 9, 0)
    done = relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON,
                            include_unrecorded=True)

    assert (done.images, done.unrecorded) == (9, 9) and not _images(site, wrong)


def test_unrecorded_images_of_a_patient_with_two_numbers_are_refused(typo, site, manager,
                                                                     make_user):
    from nccid.warehouse.models import ImageRecord

    real, right, wrong = typo
    second = replace(_wrong_patient(), hospital_number="RTX0424242")
    send_sheet(site, make_user("uploader", site), [second])
    ImageRecord.objects.update(hospital_hash=None)

    with pytest.raises(relinking.RelinkError, match="cannot be told apart"):
        relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON,
                         include_unrecorded=True)


@pytest.fixture
def misfiled(site, make_user, keyring, local_warehouse):
    """The reviewer's s2b: the site's hospital number passes the NHS/CHI check; its images,
    sent before the sheet, went under that number read as an NHS number; the sheet then
    linked it to the right patient, whose later images go right."""
    real, as_number = people(2, seed=43)
    real = replace(real, hospital_number=as_number.nhs_number)  # a valid number, as a hospital one
    assert {o.status for o in send_images(site, real, study=1, by_nhs_number=False)} == {"stored"}
    uploader = make_user("uploader", site)
    send_sheet(site, uploader, [real])
    link_known()
    assert {o.status for o in send_images(site, real, study=2, by_nhs_number=False)} == {"stored"}
    return real, keyring.pseudonym(real.nhs_number), keyring.pseudonym(as_number.nhs_number)


def test_images_filed_under_the_number_read_as_an_nhs_number_move(profile, misfiled, site,
                                                                  manager, keyring):
    from nccid.identity.models import VaultEntry
    from nccid.imaging.models import StudyReceipt
    from nccid.warehouse.dateshift import deployment_shift
    from nccid.warehouse.models import PatientSet
    from nccid.warehouse.service import get_warehouse

    real, right, phantom = misfiled
    assert len(_images(site, phantom)) == 3 and len(_images(site, right)) == 3
    assert VaultEntry.objects.filter(pseudonym=phantom).exists()  # the hospital number, as an NHS one

    found = relinking.plan(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert (found.misfiled, found.old_pseudonym, found.images) == (True, phantom, 3)
    done = relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    assert (done.images, done.receipts, done.forgotten) == (3, 1, True)
    assert not _images(site, phantom) and len(_images(site, right)) == 6
    assert not VaultEntry.objects.filter(pseudonym=phantom).exists()
    assert not PatientSet.objects.filter(pseudonym=phantom).exists()
    assert set(StudyReceipt.objects.values_list("patient", flat=True)) == {right}
    days = deployment_shift().days(right) if profile == "shift-dates" else 0
    hospital_hash = keyring.hospital_hash(site.code, real.hospital_number)
    for row in _images(site):
        ds = dcmread(BytesIO(get_warehouse().read(row.storage_key)))
        assert str(ds.PatientID) == right and row.hospital_hash == hospital_hash
        assert ds.StudyDate == (STUDY_DATE + timedelta(days=days)).strftime("%Y%m%d")
    assert not [k for k in get_warehouse().list("") if phantom in k]
    with pytest.raises(relinking.RelinkError, match="already linked to that NHS/CHI number"):
        relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)


def test_images_under_a_number_a_sheet_names_are_not_taken(misfiled, site, other_site, manager,
                                                           make_user):
    """If a sheet names the patient of the hospital number read as an NHS number, that is a
    real patient: the site's images under them cannot be told from theirs."""
    real, right, phantom = misfiled
    as_number = people(2, seed=43)[1]
    send_sheet(other_site, make_user("uploader", other_site), [as_number])

    with pytest.raises(relinking.RelinkError, match="a clinical sheet names"):
        relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert len(_images(site, phantom)) == 3


def test_the_command_says_what_it_moved_from_where_without_the_numbers(misfiled, site, manager,
                                                                       caplog):
    from typer.testing import CliRunner

    from nccid.cli.main import typer_app

    real, right, phantom = misfiled
    result = CliRunner().invoke(typer_app, [
        "patient", "relink", "--site", site.code, "--hospital-number", real.hospital_number,
        "--nhs-number", real.nhs_number, "--reason", REASON, "--user", manager.username,
        "--password-stdin", "--yes"], input="Correct-Horse-Battery-9\n")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "read as an NHS/CHI number" in output and "its vault entry" in output
    assert phantom in output and right in output
    for number in (real.nhs_number, real.hospital_number):
        assert number not in result.output and number not in caplog.text


def test_misfiled_images_stored_before_numbers_were_recorded_move_without_asking(
        misfiled, site, manager):
    """Nothing links the pseudonym of the number read as an NHS/CHI number, so every image of
    the site under it came by that number, recorded or not: no option is needed, and the
    preview says why."""
    from nccid.warehouse.models import ImageRecord

    real, right, phantom = misfiled
    assert ImageRecord.objects.filter(pseudonym=phantom).update(hospital_hash=None) == 3

    found = relinking.plan(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert (found.misfiled, found.images, found.unrecorded, found.unrecorded_left) == (
        True, 3, 3, 0)
    result = _relink_command(site, manager, real)

    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert (f"nothing links {phantom}, so they too came by the hospital number read as an "
            "NHS/CHI number") in said
    # the result says what the preview said, and the audit that the option was not asked for
    assert (f"3 of them, stored before images recorded the number that linked them, came by the "
            f"hospital number read as an NHS/CHI number (nothing links {phantom})") in said
    assert "because you asked" not in said
    from nccid.accounts.models import AuditEvent

    started = AuditEvent.objects.get(action="patient.relink.start").detail
    assert (started["include_unrecorded"], started["unrecorded"]) == (False, 3)
    assert not _images(site, phantom) and len(_images(site, right)) == 6


def _relink_command(site, manager, real):
    from typer.testing import CliRunner

    from nccid.cli.main import typer_app

    return CliRunner().invoke(typer_app, [
        "patient", "relink", "--site", site.code, "--hospital-number", real.hospital_number,
        "--nhs-number", real.nhs_number, "--reason", REASON, "--user", manager.username,
        "--password-stdin", "--yes"], input="Correct-Horse-Battery-9\n")
