"""A date typed where no date belongs may be a birth date: in any everyday spelling and anywhere
in the cell ("13 Jul 1931", "DOB 13/07/1931", "b.1931-07-13", 19310713) it refuses the row, is
never shown in the problem (kept with the upload, in the main database) nor kept in the data.
Values of the synthetic sheets and of these columns that only hold digits still pass."""

import datetime as dt
import json

import pytest

from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord, Upload
from nccid.synthetic.people import people

from .helpers import PEOPLE, one, run, sheet_of

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

BORN = people(1, seed=31)[0].birth_date


def _spellings(day: dt.date) -> list[str]:
    return [f"{day.day} {day:%b %Y}", f"{day:%d-%b-%Y}".upper(), f"{day:%Y %m %d}", f"{day:%Y%m%d}",
            f"{day:%b} {day.day} {day.year}", f"{day.day}th {day:%B %Y}", f"DOB {day:%d/%m/%Y}",
            f"b.{day:%Y-%m-%d}", f"DOB{day:%d%m%Y}", f"{day:%B %d, %Y}".upper(), f"{day:%Y-%b-%d}",
            f"seen {day:%d.%m.%Y}.", f"{day:%d %m %Y}", f"{day:%d–%m–%Y}", f"{day:%d}\\{day:%m}\\{day:%Y}",
            f"{day:%d / %m / %Y}", f"{day:%d - %m - %Y}", f"{day:%-d/%-m/%y}"]


SPELLINGS = _spellings(BORN)


@pytest.mark.parametrize("typed", SPELLINGS)
@pytest.mark.parametrize("field", ["hospital", "age", "sex", "ethnicity", "pack_year_history", "heart_rate"])
def test_a_date_in_any_spelling_is_refused_and_not_shown(field, typed):
    result, problems = one(field, typed)
    [problem] = problems
    assert (problem.severity, problem.value) == ("error", "") and "is a date" in problem.reason
    assert str(BORN.year) not in problem.reason and result.records == []


@pytest.mark.parametrize("field", ["age", "heart_rate", "crp", "sex"])
def test_an_eight_digit_number_cell_that_reads_as_a_date_is_refused_not_kept(field):
    for number in (int(f"{BORN:%Y%m%d}"), float(f"{BORN:%Y%m%d}"), int(f"{BORN:%d%m%Y}")):
        result, [problem] = one(field, number)
        assert (problem.severity, problem.value) == ("error", "") and "is a date" in problem.reason
        assert result.records == []


@pytest.mark.parametrize(("field", "typed"), [
    ("hospital", "Royal Synthetic Infirmary, Ward 12"), ("hospital", "St Mary's, Bay 3, bed 14"),
    ("hospital", "Wards 10-12, bed 14/3"), ("heart_rate", 12345678), ("heart_rate", "88 /min"),
    ("crp", "10.5"), ("crp", 10.25), ("age", "70 years"),
    # four digits, a point and one or two: a decimal number, not a year and month (CSV cells are text)
    ("ferritin", "1341.8"), ("ferritin", "2020.5"), ("ferritin", "1950.12"),
])
def test_values_that_only_hold_digits_are_not_dates(field, typed):
    result, problems = one(field, typed)
    assert not [p for p in problems if "is a date" in p.reason]


# Free text that only looked like a date: a code prefix ("5 - ") before a fraction of a day or
# week (16/24, 2/52), Ct values (never a day and a month), a decimal before a full stop, a span
# of years (a year and a month alone is refused only in a data manager's reason).
LAB = ["Detected, Ct 22/24/25", "POSITIVE (E/N2/RdRp Ct 30/31/32)", "Positive (Ct 17/19/18)",
       "SARS-CoV-2 RNA detected, Ct 38. May represent residual RNA",
       "Detected ORF1ab 23.5, N 24.1. 12 hrs TAT"]


@pytest.mark.parametrize(("field", "typed"), [
    *(("pmh_lung_disease", typed) for typed in (
        "5 - 16/24 LTOT", "5 - 2/52 hx PE", "5 - 3/12 ago PE", "5 - PE 1-2/52 ago", "5 - LTOT 2L 15-16/24",
        "5 - bronchiectasis, FEV1 1.2. 45% predicted", "5 - TB treated 2010-11")),
    *((field, typed) for field in ("first_rt_pcr_result", "second_rt_pcr_result", "final_covid_status")
      for typed in LAB),
])
def test_clinical_text_that_only_looks_like_a_date_keeps_its_row(field, typed):
    result, problems = one(field, typed)
    assert not [p for p in problems if "is a date" in p.reason] and len(result.records) == 1


@pytest.mark.parametrize("typed", LAB)
def test_a_negative_swab_status_that_only_looks_like_a_date_keeps_its_row(typed):
    result = run(sheet_of("negative", [{"swab_date": "2020-04-01", "swab_status": typed}]), "negative")
    assert not [p for p in result.problems if "is a date" in p.reason] and len(result.records) == 1


def test_the_reviewers_sheet_keeps_no_birth_date_in_the_main_database(site, make_user):
    user = make_user("uploader", site=site)
    rows = [{"hospital": typed} for typed in SPELLINGS[:4]] + [
        {"age": SPELLINGS[4]}, {"ethnicity": SPELLINGS[5]}, {"heart_rate": int(f"{BORN:%Y%m%d}")},
        {"sex": SPELLINGS[2]}, {"pack_year_history": SPELLINGS[1]}, {"hospital": "Royal Test Hospital"}]
    upload = services.preview_upload(site, "positive", "sheet.xlsx", sheet_of("positive", rows, PEOPLE), user)
    assert (upload.rejected_rows, upload.accepted_rows) == (9, 1)
    services.confirm_upload(upload, user)
    stored = json.dumps([list(Upload.objects.values("errors", "staged", "message")),
                         list(ClinicalRecord.objects.values("data", "cleaned"))], default=str)
    assert str(BORN.year) not in stored
    assert ClinicalRecord.objects.get().data["hospital"] == "Royal Test Hospital"
