"""``deid_profile`` changed on an installation holding data is refused by every command that
writes, naming the setting, the recorded profile and the way out. Before, a switch from
``retain-dates`` to ``shift-dates`` was accepted: a patient's two studies taken the same day,
stored either side of it, showed both the real and the shifted date in the catalogue (the
offset given away), and 'nccid init' only rewrote the clinical JSON. An empty installation
may change it freely; one from a release before the record has it inferred, not refused."""

from __future__ import annotations

import json
from io import BytesIO

import pydicom
import pytest

from nccid.cli.tests.clirun import run_cli
from nccid.clinical.tests.helpers import sheet_of
from nccid.config import ConfigError, reset_settings_cache
from nccid.imaging.models import PendingImage
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse import layout
from nccid.warehouse.deid_profile import SET_WHILE_EMPTY, check_deid_profile
from nccid.warehouse.models import DeidProfileRecord, ImageRecord
from nccid.warehouse.service import assign_set, clinical_json, store_image, sync_clinical
from nccid.warehouse.upgrade import CLINICAL_STAMP_KEY, record_clinical_rule

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PERSON = people(1, seed=56, site_prefix="RTEST")[0]
MAKE_IMAGE_PEOPLE = people(50, seed=7)  # make_image's


@pytest.fixture
def profile(monkeypatch):
    """profile(name): the deployment's deid_profile from now on (NCCID_DEID_PROFILE)."""
    def choose(name: str) -> None:
        monkeypatch.setenv("NCCID_DEID_PROFILE", name)
        reset_settings_cache()

    yield choose
    monkeypatch.delenv("NCCID_DEID_PROFILE", raising=False)
    reset_settings_cache()


def _clinical_record(site, pseudonym: str, warehouse) -> str:
    """A positive record and its JSON, as an import writes them; returns the JSON's key."""
    from nccid.clinical.models import ClinicalRecord, Upload

    cleaned = {"date_of_positive_covid_swab": "2020-04-02", "age": 63}
    upload = Upload.objects.create(site=site, kind="positive", sha256="1" * 64)
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  cleaned=cleaned, digest="d", last_upload=upload)
    key = layout.clinical_key(assign_set(site, pseudonym), pseudonym, "positive", site.code)
    warehouse.write_atomic(key, clinical_json(cleaned))
    return key


def _study_file(tmp_path, study: int):
    path = tmp_path / f"study{study}.dcm"
    path.write_bytes(to_bytes(synthetic_instance(PERSON, study=study, patient_id=PERSON.nhs_number)))
    return path


def _refused(result, configured: str, recorded: str, how: str) -> None:
    assert result.code == 1 and "Traceback" not in result.err, result.err
    assert result.err_text.count("error:") == 1
    assert (f"deid_profile is {configured} (from NCCID_DEID_PROFILE), but this installation's "
            f"images and clinical records were de-identified under {recorded} ({how})"
            in result.err_text), result.err_text
    assert (f"Set deid_profile back to {recorded}, or use {configured} in a new installation"
            in result.err_text)


def test_a_switch_is_refused_by_imports_and_init_once_images_are_stored(
        site, local_warehouse, keyring, profile, monkeypatch, tmp_path):
    profile("retain-dates")
    assert run_cli(monkeypatch, "init").code == 0  # a new installation: its profile recorded
    imported = run_cli(monkeypatch, "images", "import", "--site", "RTEST",
                       str(_study_file(tmp_path, 1)))
    assert imported.code == 0, imported.err
    stored = ImageRecord.objects.count() + PendingImage.objects.count()
    assert stored == 1

    profile("shift-dates")
    recorded = f"recorded {DeidProfileRecord.objects.get().recorded_at:%Y-%m-%d}, {SET_WHILE_EMPTY}"
    _refused(run_cli(monkeypatch, "images", "import", "--site", "RTEST",
                     str(_study_file(tmp_path, 2))), "shift-dates", "retain-dates", recorded)
    _refused(run_cli(monkeypatch, "init"), "shift-dates", "retain-dates", recorded)
    assert ImageRecord.objects.count() + PendingImage.objects.count() == stored
    assert DeidProfileRecord.objects.get().profile == "retain-dates"


def test_the_reverse_switch_is_refused_once_a_clinical_record_is_stored(
        site, local_warehouse, keyring, profile, monkeypatch, tmp_path):
    profile("shift-dates")
    assert run_cli(monkeypatch, "init").code == 0
    sheet = tmp_path / "positive.xlsx"
    sheet.write_bytes(sheet_of("positive", [{"age": 63}], [PERSON]))
    imported = run_cli(monkeypatch, "clinical", "import", str(sheet), "--site", "RTEST",
                       "--kind", "positive")
    assert imported.code == 0, imported.err
    sync_clinical()  # what the import's commit has written (a test's transaction never commits)
    (key,) = (key for key in local_warehouse.list() if "/data/" in key)
    written = local_warehouse.read(key)

    profile("retain-dates")
    result = run_cli(monkeypatch, "init")
    _refused(result, "retain-dates", "shift-dates",
             f"recorded {DeidProfileRecord.objects.get().recorded_at:%Y-%m-%d}, {SET_WHILE_EMPTY}")
    assert "Rewrote" not in result.out
    assert local_warehouse.read(key) == written  # nothing rewritten under the other rule


def test_an_empty_installation_may_change_its_profile_freely(
        site, local_warehouse, keyring, profile, monkeypatch, tmp_path):
    profile("retain-dates")
    assert run_cli(monkeypatch, "init").code == 0
    profile("shift-dates")
    changed = run_cli(monkeypatch, "init")
    assert changed.code == 0, changed.err
    assert DeidProfileRecord.objects.get().profile == "shift-dates"
    assert "Rewrote" not in changed.out  # no clinical JSON to rewrite: only the stamp follows
    assert json.loads(local_warehouse.read(CLINICAL_STAMP_KEY))["dates_shifted"] is True

    imported = run_cli(monkeypatch, "images", "import", "--site", "RTEST",
                       str(_study_file(tmp_path, 1)))
    assert imported.code == 0, imported.err  # stored under the new profile, which now holds
    profile("retain-dates")
    with pytest.raises(ConfigError, match="de-identified under shift-dates"):
        check_deid_profile()


def test_a_waiting_image_counts_as_data(site, local_warehouse, keyring, profile):
    from datetime import timedelta

    from django.utils import timezone

    profile("retain-dates")
    check_deid_profile()
    PendingImage.objects.create(site=site, hospital_hash="h" * 32, sop_uid="1.2.3",
                                study_uid="1.2", file_name="x.enc", size=1, source="import",
                                expires_at=timezone.now() + timedelta(days=90))
    profile("shift-dates")
    with pytest.raises(ConfigError, match="de-identified under retain-dates"):
        check_deid_profile()


def _store_deidentified(site, make_image, longitudinal_temporal: str) -> None:
    """An image as the engine writes it (its header says how its dates were treated), its
    patient's number in the vault as intake leaves it."""
    from nccid.identity.service import encrypt_for_vault, store_in_vault

    pseudonym, data, meta = make_image(0)
    ds = pydicom.dcmread(BytesIO(data))
    ds.LongitudinalTemporalInformationModified = longitudinal_temporal
    store_image(site, pseudonym, to_bytes(ds), meta)
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, MAKE_IMAGE_PEOPLE[0].nhs_number)})


def test_an_installation_from_before_the_record_upgrades_under_its_images_profile(
        site, local_warehouse, keyring, make_image, profile, monkeypatch):
    _store_deidentified(site, make_image, "MODIFIED")  # an older release under shift-dates
    profile("shift-dates")
    upgraded = run_cli(monkeypatch, "init")
    assert upgraded.code == 0, upgraded.err
    record = DeidProfileRecord.objects.get()
    assert (record.profile, record.how) == ("shift-dates",
                                            "inferred from its newest stored image's header")


def test_an_older_installation_upgraded_under_another_profile_is_refused(
        site, local_warehouse, keyring, make_image, profile, monkeypatch):
    _store_deidentified(site, make_image, "UNMODIFIED")  # an older release under retain-dates
    profile("shift-dates")
    _refused(run_cli(monkeypatch, "init"), "shift-dates", "retain-dates",
             "inferred from its newest stored image's header")
    assert not DeidProfileRecord.objects.exists()


def test_without_images_the_clinical_json_stamp_tells_the_profile(
        site, local_warehouse, keyring, profile):
    _clinical_record(site, keyring.pseudonym(PERSON.nhs_number), local_warehouse)
    record_clinical_rule(dates_shifted=False)  # the release before, under retain-dates
    profile("shift-dates")
    with pytest.raises(ConfigError, match=r"under retain-dates \(inferred from the warehouse's "
                                        r"clinical JSON stamp\)"):
        check_deid_profile()
    profile("retain-dates")
    check_deid_profile()
    assert DeidProfileRecord.objects.get().profile == "retain-dates"


def test_when_nothing_tells_an_older_installations_setting_is_recorded(
        site, local_warehouse, keyring, profile):
    _clinical_record(site, keyring.pseudonym(PERSON.nhs_number), local_warehouse)  # no stamp
    profile("shift-dates")
    check_deid_profile()
    assert DeidProfileRecord.objects.get().profile == "shift-dates"
