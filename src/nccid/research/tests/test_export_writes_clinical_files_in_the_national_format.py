"""An export's clinical JSON as the national bucket held it, so programs written for that bucket
run on it: per patient folder ``{set}/data/<Pseudonym>/``, ``data_<YYYY-MM-DD>.json`` (a
positive-template row) and ``status_<YYYY-MM-DD>.json`` (a negative-template row), keyed by the
template's column headers plus ``Pseudonym`` and ``SubmittingCentre``, values as the template
encodes them. Read here by a reader written from that description alone."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from nccid.clinical import services as clinical_services
from nccid.clinical.models import ClinicalRecord
from nccid.config import reset_settings_cache
from nccid.research.cohort import CohortFilter
from nccid.research.export import export_cohort
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.people import people
from nccid.warehouse.catalogue import refresh_catalogue

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
NAME = re.compile(r"^(data|status)_(\d{4}-\d{2}-\d{2})(\.\d+)?\.json$")
SHEET_KEYS = {"Pseudonym", "SubmittingCentre", "Age", "Sex", "Ethnicity", "Date of admission",
              "ITU admission", "Death", "Final COVID Status", "PMH hypertension", "CRP on admission"}


def read_national(base: Path) -> dict[str, list[tuple[str, date, dict]]]:
    """Pseudonym -> [(data|status, date in the file name, record)]: the date is what follows
    the ``_`` up to the first ``.``; data and status are told apart by the name's prefix."""
    patients: dict[str, list] = {}
    for folder in sorted((base / "data").iterdir()):
        for path in sorted(folder.iterdir()):
            prefix, _, rest = path.name.partition("_")
            assert prefix in ("data", "status") and NAME.match(path.name), path.name
            day = datetime.strptime(rest.split(".")[0], "%Y-%m-%d").date()
            patients.setdefault(folder.name, []).append((prefix, day, json.loads(path.read_text())))
    return patients


def _export(site, make_user, tmp_path, django_capture_on_commit_callbacks) -> tuple[Path, list]:
    site.split_rule = "training"
    site.save()
    persons = people(4, seed=23)
    uploader = make_user("uploader", site=site)
    for kind, who in (("positive", persons[:3]), ("negative", persons[1:])):
        sheet = tmp_path / f"{kind}.csv"
        write_sheet(kind, who, sheet, fmt="csv", seed=5)
        with django_capture_on_commit_callbacks(execute=True):
            assert clinical_services.import_file(site, kind, sheet, uploader,
                                                 accept_test_numbers=True).status == "accepted"
    refresh_catalogue()
    export = tmp_path / "export"
    export_cohort(make_user("researcher"), CohortFilter(), export, ("csv", "dicom"))
    return export / "training", persons


def _cleaned(base: Path, pseudonym: str, kind: str, site) -> dict:
    return json.loads((base / "data-cleaned" / pseudonym / f"{kind}-{site.code}.json").read_text())


def test_an_export_holds_data_and_status_files_keyed_by_the_template_headers(
        site, local_warehouse, keyring, make_user, tmp_path, django_capture_on_commit_callbacks):
    base, persons = _export(site, make_user, tmp_path, django_capture_on_commit_callbacks)
    national = read_national(base)
    pseudonyms = [keyring.pseudonym(p.nhs_number) for p in persons]
    assert sorted(national) == sorted(pseudonyms)

    for pseudonym in pseudonyms[:3]:  # positive: one data file, named by its submission day
        (prefix, day, record), = [f for f in national[pseudonym] if f[0] == "data"]
        updated = ClinicalRecord.objects.get(pseudonym=pseudonym, kind="positive").updated
        assert day == updated.astimezone(UTC).date()
        assert SHEET_KEYS <= set(record) and not any(re.fullmatch(r"[a-z0-9_]+", k) for k in record)
        assert (record["Pseudonym"], record["SubmittingCentre"]) == (pseudonym, site.code)
        cleaned = _cleaned(base, pseudonym, "positive", site)
        assert record["Sex"] == {"Male": "1", "Female": "0"}[cleaned["sex"]]  # the template's codes
        assert record["ITU admission"] == {"Yes": "1", "No": "0"}[cleaned["itu_admission"]]
        assert record["Age"] == cleaned["age"]
        admitted = date.fromisoformat(cleaned["date_of_admission"])
        assert record["Date of admission"] == admitted.strftime("%m/%d/%Y")  # as the sheet asked

    for pseudonym in pseudonyms[1:]:  # negative: one status file per swab, named by its day
        statuses = [(day, record) for prefix, day, record in national[pseudonym] if prefix == "status"]
        swabs = _cleaned(base, pseudonym, "negative", site)["swabs"]
        assert len(statuses) == len(swabs) >= 1
        for day, record in statuses:
            assert record["SwabDate"] == day.strftime("%d/%m/%Y") and record["SwabStatus"] in ("0", "1")
            assert record["Pseudonym"] == pseudonym and record["SubmittingCentre"] == site.code
        assert sorted((d.isoformat(), {"0": "Negative", "1": "Positive"}[r["SwabStatus"]])
                      for d, r in statuses) == sorted((s["date"], s["status"]) for s in swabs)


def test_under_shift_dates_a_data_file_is_named_by_its_latest_shifted_clinical_date(
        site, local_warehouse, keyring, make_user, tmp_path, monkeypatch,
        django_capture_on_commit_callbacks):
    monkeypatch.setenv("NCCID_DEID_PROFILE", "shift-dates")
    reset_settings_cache()
    try:
        base, persons = _export(site, make_user, tmp_path, django_capture_on_commit_callbacks)
    finally:
        monkeypatch.delenv("NCCID_DEID_PROFILE")
        reset_settings_cache()
    national = read_national(base)
    for person in persons[:3]:
        pseudonym = keyring.pseudonym(person.nhs_number)
        cleaned = _cleaned(base, pseudonym, "positive", site)
        (_, day, record), = [f for f in national[pseudonym] if f[0] == "data"]
        dates = [v for k, v in cleaned.items() if k.startswith("date_") and v]
        assert day.isoformat() == max(dates)  # shifted as every date researchers see
        assert record["Date of admission"] == date.fromisoformat(
            cleaned["date_of_admission"]).strftime("%m/%d/%Y")
