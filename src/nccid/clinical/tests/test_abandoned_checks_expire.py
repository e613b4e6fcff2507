"""A checked sheet never confirmed nor cancelled would keep every patient's rows and sealed
NHS/CHI numbers in the main database for good: past ``check_retention_days`` the hourly upkeep
(the catalogue refresh) cancels it as a user's cancel does, says why, and audits it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from nccid.accounts.models import AuditEvent
from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord, Upload
from nccid.clinical.services import UploadStateError, confirm_upload, expire_checks, preview_upload
from nccid.config import get_settings

from .helpers import PEOPLE, sheet_of

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def uploader(site, make_user):
    return make_user("uploader", site)


def _checked(site, uploader, days_old: float) -> Upload:
    """A check of two patients, made ``days_old`` days ago."""
    upload = preview_upload(site, "positive", "s.xlsx",
                            sheet_of("positive", [{"age": 40}, {"age": 60}], PEOPLE[:2]), uploader)
    assert upload.status == "preview" and Upload.objects.get(pk=upload.pk).staged[services.SEALED]
    Upload.objects.filter(pk=upload.pk).update(created=timezone.now() - timedelta(days=days_old))
    return Upload.objects.get(pk=upload.pk)


def test_a_check_past_retention_is_cancelled_and_its_staged_data_deleted(site, uploader, keyring):
    days = get_settings().check_retention_days
    old = _checked(site, uploader, days + 1)

    assert expire_checks() == [old.pk]

    expired = Upload.objects.get(pk=old.pk)
    assert (expired.status, expired.staged) == ("cancelled", None)
    assert keyring.pseudonym(PEOPLE[0].nhs_number) not in json.dumps(
        list(Upload.objects.values_list("staged", flat=True)))
    # the counts stay, so the site sees what the check held, and why it is gone
    assert (expired.total_rows, expired.accepted_rows, expired.new_records) == (2, 2, 2)
    assert f"expired unconfirmed after {days} days" in expired.message
    event = AuditEvent.objects.get(action="clinical.upload.expired")
    assert (event.username, event.detail["upload"], event.detail["site"]) == ("system", old.pk, site.code)
    assert expire_checks() == []  # once


def test_a_check_younger_than_retention_is_kept(site, uploader):
    young = _checked(site, uploader, get_settings().check_retention_days - 1)

    assert expire_checks() == []

    kept = Upload.objects.get(pk=young.pk)
    assert kept.status == "preview" and kept.staged["records"] and not kept.message
    assert confirm_upload(kept, uploader).status == "accepted"


def test_the_catalogue_refresh_expires_old_checks(site, uploader, local_warehouse):
    from nccid.warehouse.catalogue import refresh_catalogue

    old = _checked(site, uploader, get_settings().check_retention_days + 1)

    refresh_catalogue()

    assert Upload.objects.get(pk=old.pk).status == "cancelled"


def test_nccid_runs_refresher_expires_old_checks_when_nothing_arrived(site, uploader, local_warehouse):
    from nccid.warehouse.refresher import CatalogueRefresher, catalogue_behind

    old = _checked(site, uploader, get_settings().check_retention_days + 1)
    assert not catalogue_behind()

    assert CatalogueRefresher().refresh_if_behind() is None

    assert Upload.objects.get(pk=old.pk).status == "cancelled"


def test_a_check_being_confirmed_is_not_expired(site, uploader, monkeypatch):
    """The expiry runs after the confirmation claimed the upload, inside its transaction:
    the confirmation wins and imports every row."""
    old = _checked(site, uploader, get_settings().check_retention_days + 1)
    write, expired = services._write, []

    def expiry_during_confirmation(upload, staged, user):
        expired.extend(expire_checks())
        return write(upload, staged, user)

    monkeypatch.setattr(services, "_write", expiry_during_confirmation)
    done = confirm_upload(old, uploader)

    assert expired == [] and done.status == "accepted" and ClinicalRecord.objects.count() == 2
    assert not AuditEvent.objects.filter(action="clinical.upload.expired").exists()


def test_a_check_confirmed_after_the_expiry_listed_it_is_not_expired(site, uploader, monkeypatch):
    """The confirmation claims the upload between the expiry's look and its cancel: the
    cancel finds it no longer waiting and leaves it (and its records) alone."""
    old = _checked(site, uploader, get_settings().check_retention_days + 1)
    drop = services._drop_check

    def confirmed_first(pk, **also):
        confirm_upload(Upload.objects.get(pk=pk), uploader)
        return drop(pk, **also)

    monkeypatch.setattr(services, "_drop_check", confirmed_first)

    assert expire_checks() == []
    done = Upload.objects.get(pk=old.pk)
    assert (done.status, done.message, ClinicalRecord.objects.count()) == ("accepted", "", 2)


def test_confirming_an_expired_check_says_it_expired(site, uploader):
    old = _checked(site, uploader, get_settings().check_retention_days + 1)
    expire_checks()

    with pytest.raises(UploadStateError, match="expired unconfirmed after"):
        confirm_upload(old, uploader)  # the page's copy, loaded before the expiry
    assert ClinicalRecord.objects.count() == 0
