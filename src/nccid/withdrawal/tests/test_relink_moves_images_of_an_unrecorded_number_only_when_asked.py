"""Images stored by a release before images recorded the hospital number that linked them
(``ImageRecord.hospital_hash`` NULL, as migration warehouse/0005 leaves every older row) may
have been sent by the wrong patient's own NHS/CHI number rather than the relinked hospital
number: nothing can tell. The upgrade reviewer's h1r: a relink moved them with the number's
images, its preview counted them as "sent under" the wrong patient by this number and said the
images sent by NHS/CHI number stayed, so one NHS number's images ended up split between two
patients. Now the preview and the result count them apart and say so, and they move only with
``--include-unrecorded``."""

from __future__ import annotations

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from nccid.synthetic.people import people

from .. import relink as relinking
from .conftest import send_images, send_sheet
from .test_relink_moves_a_hospital_number_to_the_right_patient import REASON, _images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PASSWORD = "Correct-Horse-Battery-9\n"


@pytest.fixture
def upgraded(typo, site):
    """The typo scenario (6 images by the hospital number, recorded) and 3 images the site sent
    by the wrong patient's own NHS number before the upgrade (NULL, as the migration leaves
    them), then 3 more by that NHS number after it (recorded: by NHS/CHI number)."""
    from nccid.warehouse.models import ImageRecord

    real, right, wrong = typo
    wrong_person = people(2, seed=31)[1]
    assert {o.status for o in send_images(site, wrong_person, study=7)} == {"stored"}
    legacy = ImageRecord.objects.filter(site=site, pseudonym=wrong, hospital_hash="")
    assert legacy.update(hospital_hash=None) == 3
    assert {o.status for o in send_images(site, wrong_person, study=8)} == {"stored"}
    return real, right, wrong


def _relink(site, manager, real, *options: str, answer: str = ""):
    from nccid.cli.main import typer_app

    result = CliRunner().invoke(typer_app, [
        "patient", "relink", "--site", site.code, "--hospital-number", real.hospital_number,
        "--nhs-number", real.nhs_number, "--reason", REASON, "--user", manager.username,
        "--password-stdin", *options], input=PASSWORD + answer)
    return result, " ".join(result.output.split())


def test_the_preview_counts_them_apart_and_says_they_stay(upgraded, site, manager):
    real, right, wrong = upgraded

    found = relinking.plan(manager, site.code, real.hospital_number, real.nhs_number, REASON)
    assert (found.images, found.unrecorded, found.unrecorded_left, found.left) == (6, 0, 3, 3)
    result, output = _relink(site, manager, real, answer="n\n")

    assert result.exit_code == 1 and output.endswith("Move them? [y/N]: n")  # nothing changed
    assert f"6 images in 2 studies the site sent under {wrong} by this hospital number move" in output
    assert (f"3 images the site sent under {wrong} were stored before images recorded the number "
            "that linked them") in output
    assert (f"may have been sent by the NHS/CHI number of {wrong} itself, not this hospital "
            "number") in output
    assert "They stay" in output and "--include-unrecorded" in output
    assert f"3 other images the site sent under {wrong} by NHS/CHI number" in output
    assert len(_images(site, wrong)) == 12 and not _images(site, right)


def test_the_preview_with_the_option_says_why_they_move(upgraded, site, manager):
    real, right, wrong = upgraded

    found = relinking.plan(manager, site.code, real.hospital_number, real.nhs_number, REASON,
                           include_unrecorded=True)
    assert (found.images, found.unrecorded, found.unrecorded_left, found.left) == (9, 3, 0, 3)
    result, output = _relink(site, manager, real, "--include-unrecorded", answer="n\n")

    assert result.exit_code == 1
    assert f"9 images in 3 studies the site sent under {wrong} move to {right}" in output
    assert "3 of them were stored before images recorded the number that linked them" in output
    assert ("so the number they came under is unknown: they move only because you asked "
            "(--include-unrecorded)") in output
    assert (f"may have been sent by the NHS/CHI number of {wrong} itself, not this hospital "
            "number") in output


def test_without_the_option_they_stay_even_with_yes(upgraded, site, manager):
    from nccid.accounts.models import AuditEvent

    real, right, wrong = upgraded
    result, output = _relink(site, manager, real, "--yes")

    assert result.exit_code == 0, result.output
    assert len(_images(site, right)) == 6
    stayed = _images(site, wrong)
    assert sorted(str(r.hospital_hash) for r in stayed) == ["", "", "", "None", "None", "None"]
    assert (f"3 images stored before images recorded the number that linked them stay under "
            f"{wrong}: they may have been sent by the NHS/CHI number of {wrong} itself") in output
    detail = AuditEvent.objects.get(action="patient.relink").detail
    assert (detail["images"], detail["unrecorded"], detail["unrecorded_left"]) == (6, 0, 3)


def test_the_option_moves_them(upgraded, site, manager, keyring):
    from nccid.accounts.models import AuditEvent

    real, right, wrong = upgraded
    result, output = _relink(site, manager, real, "--include-unrecorded", "--yes")

    assert result.exit_code == 0, result.output
    moved = _images(site, right)
    assert len(moved) == 9
    assert {r.hospital_hash for r in moved} == {keyring.hospital_hash(site.code,
                                                                      real.hospital_number)}
    assert {r.hospital_hash for r in _images(site, wrong)} == {""}  # by NHS number, recorded
    assert "moved 9 images" in output
    assert ("3 of them, stored before images recorded the number that linked them, moved only "
            f"because you asked (--include-unrecorded): they may have been sent by the NHS/CHI "
            f"number of {wrong} itself") in output
    assert AuditEvent.objects.get(action="patient.relink.start").detail["include_unrecorded"] is True


def test_a_second_hospital_number_refuses_only_when_they_are_included(upgraded, site, manager,
                                                                      make_user):
    """The old patient's second number at the site made unrecorded images ambiguous; left
    where they are, nothing is ambiguous."""
    real, right, wrong = upgraded
    second = replace(people(2, seed=31)[1], hospital_number="RTX0424242")
    send_sheet(site, make_user("uploader", site), [second])

    with pytest.raises(relinking.RelinkError, match="cannot be told apart"):
        relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON,
                         include_unrecorded=True)
    done = relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    assert (done.images, done.unrecorded, done.unrecorded_left) == (6, 0, 3)
    assert len(_images(site, wrong)) == 6
