"""The catalogue refreshes incrementally and its DuckDB views hold the right rows and columns."""

from __future__ import annotations

from datetime import date, datetime

from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.warehouse.service import store_image

IMAGES_COLUMNS = [
    "pseudonym", "site", "set_name", "modality", "folder", "study_uid", "series_uid", "sop_uid",
    "sop_class_uid", "study_date", "series_date", "body_part", "manufacturer", "model", "rows",
    "columns", "pixel_spacing", "view_position", "patient_sex", "patient_age", "storage_key",
    "size", "sha256", "transfer_syntax", "received_at"]
STUDIES_COLUMNS = ["pseudonym", "site", "set_name", "modality", "study_uid", "study_date",
                   "n_series", "n_images", "bytes", "first_received"]
PATIENTS_COLUMNS = ["pseudonym", "set_name", "covid_status", "sites", "age", "sex", "ethnicity",
                    "n_studies", "n_images", "has_clinical"]


def _columns(con, view):
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {view}").fetchall()]


def test_empty_catalogue_has_typed_views(site, backend):
    con = connect_catalogue()
    for view in ("images", "studies", "clinical", "patients"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
    assert [c for c, _ in _columns(con, "images")] == IMAGES_COLUMNS


def test_refresh_is_incremental_and_views_answer(site, other_site, backend, make_image):
    stored = [store_image(site, *make_image(0, "DX", study=1, series=1, instance=1)),
              store_image(site, *make_image(0, "CT", study=2, series=1, instance=1)),
              store_image(site, *make_image(0, "CT", study=2, series=2, instance=2)),
              store_image(other_site, *make_image(1, "MR", study=1, series=1, instance=1))]
    first = refresh_catalogue()
    assert (first["images"], first["studies"], first["patients"], first["new_images"], first["parts"]) == \
        (4, 3, 2, 4, 1)

    con = connect_catalogue()
    columns = dict(_columns(con, "images"))
    assert list(columns) == IMAGES_COLUMNS
    assert (columns["study_date"], columns["received_at"], columns["size"], columns["patient_age"]) == \
        ("DATE", "TIMESTAMP", "BIGINT", "INTEGER")
    assert [c for c, _ in _columns(con, "studies")] == STUDIES_COLUMNS
    assert [c for c, _ in _columns(con, "patients")] == PATIENTS_COLUMNS

    rows = con.execute("SELECT sop_uid, pseudonym, site, set_name, folder, storage_key, size, sha256, "
                       "study_date FROM images ORDER BY sop_uid").fetchall()
    expected = sorted((r.record.sop_uid, r.record.pseudonym, r.record.site.code, r.record.set_name,
                       r.record.folder, r.record.storage_key, r.record.size, r.record.sha256,
                       date(2020, 4, 2)) for r in stored)
    assert rows == expected

    ct_study = stored[1].record.study_uid
    assert con.execute("SELECT modality, n_series, n_images, bytes FROM studies WHERE study_uid = ?",
                       [ct_study]).fetchone() == ("CT", 2, 2, stored[1].record.size + stored[2].record.size)
    p0 = stored[0].record.pseudonym
    assert con.execute("SELECT n_studies, n_images, sites, covid_status, has_clinical, sex "
                       "FROM patients WHERE pseudonym = ?", [p0]).fetchone() == \
        (2, 3, ["RTEST"], "unknown", False, "Male" if stored[0].record.patient_sex == "M" else "Female")

    # A second refresh with nothing new writes no new part.
    again = refresh_catalogue()
    assert (again["new_images"], again["parts"], again["images"]) == (0, 1, 4)

    # New images become a new part; the first part is left as it was.
    part_one = backend.read("catalogue/images/part-000001.parquet")
    store_image(site, *make_image(2, "CR"))
    third = refresh_catalogue()
    assert (third["new_images"], third["parts"], third["images"], third["patients"]) == (1, 2, 5, 3)
    assert backend.read("catalogue/images/part-000001.parquet") == part_one
    con = connect_catalogue()
    assert con.execute("SELECT count(*), count(DISTINCT sop_uid) FROM images").fetchone() == (5, 5)


def test_many_parts_are_compacted_without_duplicates(site, backend, make_image):
    for instance in range(1, 5):
        store_image(site, *make_image(0, "CT", instance=instance))
        result = refresh_catalogue(compact_at=2)
    assert result["parts"] <= 2
    con = connect_catalogue()
    assert con.execute("SELECT count(*), count(DISTINCT sop_uid) FROM images").fetchone() == (4, 4)
    # Files no version names any longer are removed (the previous version's are kept).
    listed = [k for k in backend.list("catalogue/images")]
    assert len(listed) <= 4


def test_rows_claimed_by_an_interrupted_refresh_are_catalogued_once(site, backend, make_image):
    store_image(site, *make_image(0, "DX", instance=1))
    refresh_catalogue()
    late = store_image(site, *make_image(0, "DX", instance=2)).record
    # A refresh that died after claiming rows, before writing its part or state:
    ImageRecord.objects.filter(pk=late.pk).update(catalogue_part=7)
    store_image(site, *make_image(1, "DX", instance=3))  # and a row committed afterwards
    result = refresh_catalogue()
    assert result["images"] == 3
    con = connect_catalogue()
    assert con.execute("SELECT count(*), count(DISTINCT sop_uid) FROM images").fetchone() == (3, 3)


def test_received_at_is_utc_and_sets_match_the_database(site, backend, make_image):
    record = store_image(site, *make_image(3, "DX")).record
    refresh_catalogue()
    con = connect_catalogue()
    received, set_name = con.execute("SELECT received_at, set_name FROM images").fetchone()
    assert isinstance(received, datetime)
    assert abs((received - record.received_at.replace(tzinfo=None)).total_seconds()) < 1
    assert set_name == PatientSet.objects.get(pseudonym=record.pseudonym).set_name
