"""Under ``shift-dates`` a patient's clinical dates move by the same keyed offset as their DICOM
dates, wherever researchers read them (warehouse JSON, catalogue, export), and arrival times
are withheld: otherwise a clinical date minus an image date gives the offset back."""

from __future__ import annotations

import csv
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nccid.clinical import services as clinical_services
from nccid.config import reset_settings_cache
from nccid.imaging.importer import import_paths
from nccid.research.cohort import CohortFilter, RelativeDate
from nccid.research.export import export_cohort
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.dateshift import DateShift
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import store_image

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
SWAB = "Date of Positive Covid Swab"
DAYS_AFTER_SWAB = 2  # the chest X-ray is taken two days after the positive swab
_SHEET_DATE = re.compile(r"^\d{2}/\d{2}/\d{4}$")


def _profile(monkeypatch, name: str) -> None:
    monkeypatch.setenv("NCCID_DEID_PROFILE", name)
    reset_settings_cache()


@pytest.fixture
def shift_dates(local_warehouse, monkeypatch):
    _profile(monkeypatch, "shift-dates")
    yield local_warehouse
    monkeypatch.delenv("NCCID_DEID_PROFILE")
    reset_settings_cache()


def _sheet_dates(row: dict) -> list[date]:
    return [datetime.strptime(v, "%d/%m/%Y").date() for v in row.values() if _SHEET_DATE.match(v)]


def _patient_far_from_own_dates(keyring, tmp_path):
    """A synthetic patient whose offset is larger than the span of their sheet's dates, so no
    shifted date can equal an original one by chance (the key, and so the offset, is random)."""
    for person in people(20, seed=44):
        path = tmp_path / f"sheet-{person.nhs_number}.csv"
        write_sheet("positive", [person], path, fmt="csv")
        row = next(csv.DictReader(path.open(encoding="utf-8")))
        dates = _sheet_dates(row)
        span = (max(dates) - min(dates)).days + DAYS_AFTER_SWAB
        days = timedelta(days=keyring.date_shift_days(keyring.pseudonym(person.nhs_number)))
        # The national files write a positive sheet's dates month first: a shifted one must not
        # happen to spell an original one day first (01/06 for 6 January shifted, 1 June real).
        month_first = {(day + days).strftime("%m/%d/%Y") for day in dates}
        if abs(days.days) > span and not month_first & {day.strftime("%d/%m/%Y") for day in dates}:
            return person, path, row, dates
    raise AssertionError("no synthetic patient with an offset wider than their dates")


def _spellings(day: date) -> list[bytes]:
    return [day.isoformat().encode(), day.strftime("%Y%m%d").encode(),
            day.strftime("%d/%m/%Y").encode(), day.strftime("%m/%d/%Y").encode()]


def _text_of(path) -> bytes:
    """A file's bytes, or a Parquet file's rows as text, dates in ISO (its pages are compressed)."""
    if path.suffix != ".parquet":
        return path.read_bytes()
    return json.dumps(pq.read_table(path).to_pylist(), default=str).encode()


def _leaks(root, originals: list[date]) -> list[str]:
    return [f"{path.relative_to(root)}: {spelling.decode()}"
            for path in sorted(root.rglob("*")) if path.is_file()
            for day in originals for spelling in _spellings(day) if spelling in _text_of(path)]


def _researcher(make_user):
    return make_user("researcher")


def test_a_patients_clinical_dates_move_with_their_image_dates(
        site, shift_dates, keyring, make_user, tmp_path, django_capture_on_commit_callbacks):
    site.split_rule = "training"  # the researcher's set
    site.save()
    person, sheet, row, originals = _patient_far_from_own_dates(keyring, tmp_path)
    swab = datetime.strptime(row[SWAB], "%d/%m/%Y").date()
    taken = swab + timedelta(days=DAYS_AFTER_SWAB)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "cxr.dcm").write_bytes(to_bytes(synthetic_instance(
        person, patient_id=person.nhs_number, study_date=taken, plant=False)))

    with django_capture_on_commit_callbacks(execute=True):
        upload = clinical_services.import_file(site, "positive", sheet, make_user("uploader", site=site),
                                               accept_test_numbers=True)
    assert upload.status == "accepted"
    assert import_paths([folder], site).counts["stored"] == 1
    refresh_catalogue()

    pseudonym = keyring.pseudonym(person.nhs_number)
    days = keyring.date_shift_days(pseudonym)
    image = ImageRecord.objects.get(pseudonym=pseudonym)
    assert image.study_date == taken + timedelta(days=days)  # the DICOM side, as before
    record = json.loads(shift_dates.read(f"training/data/{pseudonym}/positive-{site.code}.json"))
    clinical_swab = date.fromisoformat(record["date_of_positive_covid_swab"])
    assert clinical_swab == swab + timedelta(days=days)
    assert (image.study_date - clinical_swab).days == DAYS_AFTER_SWAB

    catalogue = connect_catalogue()
    assert catalogue.execute("SELECT date_of_positive_covid_swab, updated_at FROM clinical"
                             ).fetchall() == [(clinical_swab, None)]
    assert catalogue.execute("SELECT received_at FROM images UNION ALL "
                             "SELECT first_received FROM studies").fetchall() == [(None,), (None,)]

    export = tmp_path / "export"
    export_cohort(_researcher(make_user), CohortFilter(), export, ("csv", "parquet", "dicom"))
    exported_image = next(csv.DictReader((export / "images.csv").open()))
    exported_record = next(csv.DictReader((export / "clinical.csv").open()))
    assert (date.fromisoformat(exported_image["study_date"])
            - date.fromisoformat(exported_record["date_of_positive_covid_swab"])).days == DAYS_AFTER_SWAB
    assert exported_image["received_at"] == "" and exported_record["updated_at"] == ""
    # No date of the sheet, in any spelling, in anything a researcher can read.
    warehouse_root = tmp_path / "warehouse"
    assert _leaks(warehouse_root, originals) == []
    assert _leaks(export, originals) == []


def test_images_within_days_of_a_clinical_date_are_found_in_shifted_dates(
        site, shift_dates, keyring, make_user, tmp_path, django_capture_on_commit_callbacks):
    site.split_rule = "training"
    site.save()
    person, sheet, row, _ = _patient_far_from_own_dates(keyring, tmp_path)
    swab = datetime.strptime(row[SWAB], "%d/%m/%Y").date()
    folder = tmp_path / "images"
    folder.mkdir()
    for study, taken in ((1, swab + timedelta(days=DAYS_AFTER_SWAB)), (2, swab + timedelta(days=30))):
        (folder / f"cxr{study}.dcm").write_bytes(to_bytes(synthetic_instance(
            person, study=study, patient_id=person.nhs_number, study_date=taken, plant=False)))
    with django_capture_on_commit_callbacks(execute=True):
        clinical_services.import_file(site, "positive", sheet, make_user("uploader", site=site),
                                      accept_test_numbers=True)
    import_paths([folder], site)
    refresh_catalogue()

    within = CohortFilter(within=RelativeDate(days_before=3, days_after=3))  # --within-days 3
    result = export_cohort(_researcher(make_user), within, tmp_path / "export", ("csv",))
    assert result.counts.as_dict() == {"patients": 1, "studies": 1, "images": 1}


def test_a_catalogue_written_with_arrival_times_is_rewritten_without_them(
        site, local_warehouse, keyring, make_image, monkeypatch):
    """A catalogue built before arrival times were withheld: the first refresh under
    ``shift-dates`` rewrites every image part, the second drops the previous version's files."""
    store_image(site, *make_image(0))
    refresh_catalogue()  # retain-dates: real arrival times, as every catalogue had before
    assert connect_catalogue().execute("SELECT received_at FROM images").fetchone()[0] is not None
    _profile(monkeypatch, "shift-dates")
    try:
        store_image(site, *make_image(1))
        refresh_catalogue()
        refresh_catalogue()
        rows = connect_catalogue().execute("SELECT received_at FROM images").fetchall()
        assert rows == [(None,), (None,)]
        parts = [pq.read_table(path) for path in Path(local_warehouse.path("catalogue/images")).glob("*.parquet")]
        assert parts and all(part.column("received_at").null_count == part.num_rows for part in parts)
    finally:
        monkeypatch.delenv("NCCID_DEID_PROFILE")
        reset_settings_cache()


def test_retain_dates_keeps_clinical_dates_and_negative_swabs_shift_at_any_depth(keyring):
    record = {"latest_swab_date": "2020-05-02", "swabs": [{"date": "2020-05-02", "status": "Negative"},
                                                          {"date": None, "status": "Positive"}],
              "hospital": "Royal Test Infirmary", "age": 63}
    assert DateShift(None).clinical("NCCID-X", record) is record
    shifted = DateShift(keyring).clinical("NCCID-X", record)
    days = keyring.date_shift_days("NCCID-X")
    moved = (date(2020, 5, 2) + timedelta(days=days)).isoformat()
    assert shifted == {**record, "latest_swab_date": moved,
                       "swabs": [{"date": moved, "status": "Negative"}, {"date": None, "status": "Positive"}]}
    assert record["swabs"][0]["date"] == "2020-05-02"  # the database's record is not changed


def test_a_shifted_clinical_date_time_loses_its_utc_offset(keyring):
    """As the DICOM side drops a DT's offset: 2020-10-25T00:30:00+01:00 shifted into winter
    would still say it was summer time, and give the offset's range away."""
    summer_time = timezone(timedelta(hours=1))
    record = {"admitted": "2020-10-25T00:30:00+01:00", "seen": ["2020-10-27 09:00Z", "2020-10-27T09:00-0500"],
              "swabbed": datetime(2020, 10, 25, 0, 30, tzinfo=summer_time), "note": "2020-10-25"}
    assert DateShift(None).clinical("NCCID-X", record) is record  # retain-dates: as typed
    days = timedelta(days=keyring.date_shift_days("NCCID-X"))
    shifted = DateShift(keyring).clinical("NCCID-X", record)
    assert shifted == {"admitted": f"{date(2020, 10, 25) + days}T00:30:00",
                       "seen": [f"{date(2020, 10, 27) + days} 09:00", f"{date(2020, 10, 27) + days}T09:00"],
                       "swabbed": datetime(2020, 10, 25, 0, 30) + days,
                       "note": f"{date(2020, 10, 25) + days}"}
