"""A warehouse written before clinical dates were shifted (an older release under
``shift-dates``): its clinical JSON holds the real dates while the images' are shifted, so the
difference is the patient's offset. ``nccid init`` (the upgrade command) rewrites it and
refreshes the catalogue, ``warehouse verify`` says so until then, and an export never hands out
a JSON whose dates disagree with the catalogue's tables."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta

import pytest
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.config import reset_settings_cache
from nccid.identity.keys import SHIFT_BOTH_WAYS
from nccid.research.cohort import CohortFilter
from nccid.research.export import export_cohort
from nccid.warehouse import layout
from nccid.warehouse.catalogue import ARRIVALS_WITHHELD, STATE_KEY, refresh_catalogue
from nccid.warehouse.deid_profile import check_deid_profile
from nccid.warehouse.service import assign_set, clinical_json
from nccid.warehouse.upgrade import CLINICAL_STAMP_KEY, clinical_json_stale, upgrade_warehouse

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
SWAB = "2020-11-06"


@pytest.fixture
def shift_dates(local_warehouse, monkeypatch):
    monkeypatch.setenv("NCCID_DEID_PROFILE", "shift-dates")
    reset_settings_cache()
    yield local_warehouse
    monkeypatch.delenv("NCCID_DEID_PROFILE")
    reset_settings_cache()


@pytest.fixture
def old_home(site, local_warehouse, make_image, monkeypatch):
    """One positive record, its JSON written unshifted and without a stamp as releases before
    the shift wrote it, and a catalogue built then (with arrival times)."""
    from nccid.clinical.models import ClinicalRecord, Upload
    from nccid.identity.service import encrypt_for_vault, store_in_vault
    from nccid.synthetic.people import people

    site.split_rule = "training"
    site.save()
    pseudonym = make_image(3)[0]
    # its number in the vault, as an import leaves it ('nccid init' refuses patients without)
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, people(50, seed=7)[3].nhs_number)})
    upload = Upload.objects.create(site=site, kind="positive", sha256="1" * 64)
    cleaned = {"date_of_positive_covid_swab": SWAB, "age": 63}
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  cleaned=cleaned, digest="d", last_upload=upload)
    key = layout.clinical_key(assign_set(site, pseudonym), pseudonym, "positive", site.code)
    local_warehouse.write_atomic(key, clinical_json(cleaned))  # the old code's write: as is
    refresh_catalogue()  # under retain-dates: arrival times kept, as every old catalogue had
    return pseudonym, key


def _swab(data: bytes) -> date:
    return date.fromisoformat(json.loads(data)["date_of_positive_covid_swab"])


def test_init_rewrites_unshifted_clinical_json_and_verify_says_so_before(
        old_home, shift_dates, keyring):
    pseudonym, key = old_home
    # an older release's data: their offsets drawn both ways, kept (deid_profile.date_shift)
    days = keyring.date_shift_days(pseudonym, scheme=SHIFT_BOTH_WAYS)
    shifted = date.fromisoformat(SWAB) + timedelta(days=days)
    assert clinical_json_stale()
    verify = CliRunner().invoke(typer_app, ["warehouse", "verify", "--all"])
    assert verify.exit_code == 1 and "run 'nccid init'" in " ".join(verify.output.split())

    init = CliRunner().invoke(typer_app, ["init"])
    assert init.exit_code == 0, init.output
    assert "Rewrote 1 clinical record(s)" in init.output
    assert _swab(shift_dates.read(key)) == shifted
    assert json.loads(shift_dates.read(CLINICAL_STAMP_KEY))["dates_shifted"] is True
    assert json.loads(shift_dates.read(STATE_KEY)).get(ARRIVALS_WITHHELD) is True
    assert not clinical_json_stale()
    assert CliRunner().invoke(typer_app, ["warehouse", "verify", "--all"]).exit_code == 0

    again = upgrade_warehouse()  # a current warehouse is only read
    assert again.clinical_rewritten is None and not again.catalogue_refreshed


def test_an_export_gives_the_catalogues_dates_even_before_the_upgrade(
        old_home, shift_dates, keyring, make_user, tmp_path):
    pseudonym, key = old_home
    check_deid_profile()  # as the upkeep's start does: an older release's scheme recorded
    refresh_catalogue()  # the catalogue's clinical view is built shifted; the JSON is not
    assert _swab(shift_dates.read(key)) == date.fromisoformat(SWAB)

    export = tmp_path / "export"
    export_cohort(make_user("researcher"), CohortFilter(), export, ("csv", "dicom"))
    row = next(csv.DictReader((export / "clinical.csv").open()))
    exported = _swab((export / key.replace("/data/", "/data-cleaned/", 1)).read_bytes())  # our JSON's place
    assert exported == date.fromisoformat(row["date_of_positive_covid_swab"])
    days = keyring.date_shift_days(pseudonym, scheme=SHIFT_BOTH_WAYS)
    assert exported == date.fromisoformat(SWAB) + timedelta(days=days)


def test_a_new_warehouse_is_stamped_without_rewriting(site, local_warehouse):
    done = upgrade_warehouse()
    assert done.clinical_rewritten is None and not done.catalogue_refreshed
    assert json.loads(local_warehouse.read(CLINICAL_STAMP_KEY))["dates_shifted"] is False
    assert not clinical_json_stale()
