"""Under ``shift-dates`` a new installation moves dates backward only: a study taken ten days
ago, and its patient's clinical dates, are never shifted past today. Offsets of -365..365 put
such a study months into the future, and the researcher learnt the offset was at least its
distance from today. An installation that holds data shifted both ways (every release before)
keeps those offsets, recorded with its profile, for its images and clinical dates alike."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from nccid.clinical import services as clinical_services
from nccid.clinical.models import ClinicalRecord, Upload
from nccid.clinical.tests.helpers import positive_row, xlsx_bytes
from nccid.config import reset_settings_cache
from nccid.identity.keys import SHIFT_BACKWARD, SHIFT_BOTH_WAYS
from nccid.imaging.importer import import_paths
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.deid_profile import check_deid_profile, date_shift_scheme
from nccid.warehouse.models import DeidProfileRecord, ImageRecord

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
SWAB_DAYS_AGO, TAKEN_DAYS_AGO = 12, 10


@pytest.fixture
def shift_dates(local_warehouse, monkeypatch, site):
    monkeypatch.setenv("NCCID_DEID_PROFILE", "shift-dates")
    reset_settings_cache()
    site.split_rule = "training"
    site.save()
    yield local_warehouse
    monkeypatch.delenv("NCCID_DEID_PROFILE")
    reset_settings_cache()


def _patient_the_old_scheme_moves_forward(keyring):
    """A synthetic patient whose both-ways offset would take a recent date past today."""
    return next(p for p in people(40, seed=61)
                if keyring.date_shift_days(keyring.pseudonym(p.nhs_number),
                                           scheme=SHIFT_BOTH_WAYS) > TAKEN_DAYS_AGO)


def _import_recent(site, person, make_user, tmp_path, capture, study: int = 1) -> tuple[date, date]:
    """A positive record with a swab 12 days ago and a chest X-ray taken 10 days ago, imported
    as a site would; returns (swab, taken)."""
    swab = date.today() - timedelta(days=SWAB_DAYS_AGO)
    taken = date.today() - timedelta(days=TAKEN_DAYS_AGO)
    sheet = tmp_path / f"positive{study}.xlsx"
    sheet.write_bytes(xlsx_bytes(*_one_row(person, swab)))
    with capture(execute=True):
        upload = clinical_services.import_file(site, "positive", sheet,
                                               make_user("uploader", site=site, username=f"u{study}"),
                                               accept_test_numbers=True)
    assert upload.status == "accepted"
    folder = tmp_path / f"images{study}"
    folder.mkdir()
    (folder / "cxr.dcm").write_bytes(to_bytes(synthetic_instance(
        person, study=study, patient_id=person.nhs_number, study_date=taken, plant=False)))
    assert import_paths([folder], site).counts["stored"] == 1
    return swab, taken


def _one_row(person, swab: date):
    headers, row = positive_row(person, date_of_positive_covid_swab=swab)
    return headers, [row]


def _stored_earlier(site, keyring) -> None:
    """A clinical record of a patient an older release stored."""
    upload = Upload.objects.create(site=site, kind="positive", sha256="1" * 64)
    ClinicalRecord.objects.create(site=site, pseudonym=keyring.pseudonym(people(1, seed=62)[0].nhs_number),
                                  kind="positive", cleaned={"age": 50}, digest="d", last_upload=upload)


def _researchers_dates(warehouse, site, pseudonym) -> tuple[date, date]:
    """(study date, swab date) as a researcher reads them: the image's record and catalogue row,
    the clinical JSON and the catalogue's clinical table, checked to agree."""
    refresh_catalogue()
    catalogue = connect_catalogue()
    study = ImageRecord.objects.get(pseudonym=pseudonym).study_date
    assert catalogue.execute("SELECT study_date FROM images").fetchall() == [(study,)]
    record = json.loads(warehouse.read(f"training/data/{pseudonym}/positive-{site.code}.json"))
    swab = date.fromisoformat(record["date_of_positive_covid_swab"])
    assert catalogue.execute("SELECT date_of_positive_covid_swab FROM clinical WHERE pseudonym = ?",
                             [pseudonym]).fetchall() == [(swab,)]
    return study, swab


def test_a_recent_study_and_its_clinical_dates_are_never_shifted_past_today(
        site, shift_dates, keyring, make_user, tmp_path, django_capture_on_commit_callbacks):
    check_deid_profile()  # a new installation's first start: backward recorded
    assert DeidProfileRecord.objects.get().date_shift == SHIFT_BACKWARD
    person = _patient_the_old_scheme_moves_forward(keyring)
    pseudonym = keyring.pseudonym(person.nhs_number)
    swab, taken = _import_recent(site, person, make_user, tmp_path, django_capture_on_commit_callbacks)

    study, clinical_swab = _researchers_dates(shift_dates, site, pseudonym)
    days = keyring.date_shift_days(pseudonym)
    assert -365 <= days <= -1
    assert study == taken + timedelta(days=days) < date.today()
    assert clinical_swab == swab + timedelta(days=days) < date.today()


def test_an_installation_with_data_shifted_both_ways_keeps_its_patients_offsets(
        site, shift_dates, keyring, make_user, tmp_path, django_capture_on_commit_callbacks):
    """The record of the release before (no scheme) beside its data: both ways from then on,
    for images and clinical dates alike, as for a patient's data already stored."""
    person = _patient_the_old_scheme_moves_forward(keyring)
    pseudonym = keyring.pseudonym(person.nhs_number)
    _stored_earlier(site, keyring)
    DeidProfileRecord.objects.create(pk=1, profile="shift-dates", how="set while no data were stored")
    assert date_shift_scheme() == SHIFT_BOTH_WAYS  # before the first check, too
    check_deid_profile()
    assert DeidProfileRecord.objects.get().date_shift == SHIFT_BOTH_WAYS

    swab, taken = _import_recent(site, person, make_user, tmp_path, django_capture_on_commit_callbacks)
    study, clinical_swab = _researchers_dates(shift_dates, site, pseudonym)
    days = keyring.date_shift_days(pseudonym, scheme=SHIFT_BOTH_WAYS)  # the older release's
    assert study == taken + timedelta(days=days)
    assert clinical_swab == swab + timedelta(days=days)


def test_an_installation_before_the_record_with_shifted_data_shifts_both_ways(
        site, shift_dates, keyring):
    _stored_earlier(site, keyring)
    check_deid_profile()
    assert DeidProfileRecord.objects.get().date_shift == SHIFT_BOTH_WAYS


def test_both_ways_once_recorded_is_kept_even_when_the_data_are_gone(
        site, shift_dates, keyring, monkeypatch):
    """Researchers may hold copies shifted both ways: a patient stored again must get the same
    offset, so an emptied installation (its profile changed meanwhile) keeps the scheme."""
    DeidProfileRecord.objects.create(pk=1, profile="shift-dates", how="inferred", date_shift=SHIFT_BOTH_WAYS)
    for profile in ("retain-dates", "shift-dates"):
        monkeypatch.setenv("NCCID_DEID_PROFILE", profile)
        reset_settings_cache()
        check_deid_profile()
        assert DeidProfileRecord.objects.get().profile == profile
        assert date_shift_scheme() == SHIFT_BOTH_WAYS


def test_an_older_record_of_retain_dates_or_without_data_shifts_backward(site, shift_dates):
    DeidProfileRecord.objects.create(pk=1, profile="shift-dates", how="set while no data were stored")
    check_deid_profile()  # an installation of the release before that never stored anything
    assert DeidProfileRecord.objects.get().date_shift == SHIFT_BACKWARD
