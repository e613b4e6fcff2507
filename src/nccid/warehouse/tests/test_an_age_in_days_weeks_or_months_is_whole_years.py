"""A Patient's Age in days, weeks or months (``120M``, ``104W``) is catalogued as the whole
years it has completed, as one in years is: it was 0 whatever its number, so a ten-year-old
(whose patients.age falls back to the image's without a clinical age) was taken for a baby."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nccid.warehouse.catalogue import connect_catalogue, refresh_catalogue
from nccid.warehouse.service import age_in_years, store_image

AGES = [("045Y", 45), ("120M", 10), ("104W", 2), ("018M", 1), ("400D", 1), ("011M", 0),
        ("364D", 0), ("051W", 0), ("052W", 1), ("999D", 2), ("999M", 83), ("45", 45),
        ("", None), ("45 years", None)]


@pytest.mark.parametrize(("text", "years"), AGES)
def test_an_age_string_is_its_whole_years(text, years):
    assert age_in_years(text) == years


def test_the_catalogue_and_its_patients_hold_the_age_in_years(site, backend, make_image):
    ages = {}
    for index, text in enumerate(("120M", "104W", "400D")):
        pseudonym, data, meta = make_image(index, "DX")
        store_image(site, pseudonym, data, replace(meta, patient_age=text))
        ages[pseudonym] = age_in_years(text)
    refresh_catalogue()
    con = connect_catalogue()
    assert dict(con.execute("SELECT pseudonym, patient_age FROM images").fetchall()) == ages
    assert dict(con.execute("SELECT pseudonym, age FROM patients").fetchall()) == ages == {
        p: years for p, years in zip(ages, (10, 2, 1), strict=True)}
