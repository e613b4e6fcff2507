"""The clinical and patients views: cleaned fields flattened as typed columns, COVID status."""

from __future__ import annotations

import json
from datetime import date

from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.models import PatientSet
from nccid.warehouse.service import assign_set, store_image


def _record(site, pseudonym, kind, cleaned):
    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind=kind, sha256="0" * 64)
    return ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind=kind, cleaned=cleaned,
                                         digest=json.dumps(cleaned)[:64], last_upload=upload)


def test_clinical_view_and_patient_status(site, other_site, local_warehouse, make_image):
    image_pseudonym, data, meta = make_image(0, "DX")
    store_image(site, image_pseudonym, data, meta)
    positive, negative, swab_positive, isaric_only = (make_image(i)[0] for i in (1, 2, 3, 4))
    for pseudonym in (positive, negative, swab_positive, isaric_only):
        assign_set(site, pseudonym)
    _record(site, image_pseudonym, "negative", {"any_positive_swab": False, "latest_swab_status": "Negative"})
    _record(site, positive, "positive", {
        "age": 63.0, "sex": "Female", "ethnicity": "Asian", "date_of_admission": "2020-04-01",
        "itu_admission": "Yes", "death": "No", "final_covid_status": "Positive",
        "date_of_death": None, "isaric_4c_score": "not a number"})
    _record(other_site, positive, "isaric", {"age": 64, "outcome": "Discharged", "isaric_4c_score": 9})
    _record(site, negative, "negative", {"latest_swab_date": "2020-05-02", "any_positive_swab": False})
    _record(site, swab_positive, "negative", {"any_positive_swab": True})
    _record(site, isaric_only, "isaric", {"outcome": "Death"})

    counts = refresh_catalogue()
    assert (counts["clinical"], counts["patients"], counts["images"]) == (6, 5, 1)
    con = connect_catalogue()
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE clinical)").fetchall())
    assert (types["age"], types["date_of_admission"], types["any_positive_swab"], types["sex"]) == \
        ("INTEGER", "DATE", "BOOLEAN", "VARCHAR")
    assert con.execute(
        "SELECT site, set_name, age, sex, date_of_admission, itu_admission, isaric_4c_score, "
        "json_extract_string(cleaned, '$.ethnicity') FROM clinical WHERE pseudonym = ? AND kind = 'positive'",
        [positive]).fetchone() == (
        "RTEST", PatientSet.objects.get(pseudonym=positive).set_name, 63, "Female",
        date(2020, 4, 1), "Yes", None, "Asian")

    status = dict(con.execute("SELECT pseudonym, covid_status FROM patients").fetchall())
    assert status == {image_pseudonym: "negative", positive: "positive", negative: "negative",
                      swab_positive: "positive", isaric_only: "unknown"}
    row = con.execute("SELECT sites, age, sex, ethnicity, has_clinical, n_images FROM patients "
                      "WHERE pseudonym = ?", [positive]).fetchone()
    assert row == (["OTHER", "RTEST"], 64, "Female", "Asian", True, 0)
    assert con.execute("SELECT has_clinical, n_studies, n_images FROM patients WHERE pseudonym = ?",
                       [image_pseudonym]).fetchone() == (True, 1, 1)
