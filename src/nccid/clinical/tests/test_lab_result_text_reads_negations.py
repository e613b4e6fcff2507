"""RT-PCR result text: a negated "detected" is Negative, and text that is not a clear result is an
error for its cell (sheet row and column), never a guess."""

import pytest

from .helpers import PEOPLE, one, run, sheet_of


@pytest.mark.parametrize("typed", [
    "Undetected", "Non-detected", "Not detected", "No SARS-CoV-2 RNA detected", "NOT DETECTED",
    "SARS-CoV-2 RNA not detected", "Nondetected", "RNA undetected (SARS-CoV-2)", "Negative",
])
def test_negated_detected_is_negative(typed):
    result, problems = one("first_rt_pcr_result", typed)
    assert problems == [] and result.records[0].cleaned["first_rt_pcr_result"] == "Negative"


@pytest.mark.parametrize("typed", [
    "Detected", "SARS-CoV-2 RNA DETECTED", "RNA DETECTED (SARS-CoV-2)", "COVID-19 positive",
])
def test_detected_is_positive(typed):
    result, problems = one("first_rt_pcr_result", typed)
    assert problems == [] and result.records[0].cleaned["first_rt_pcr_result"] == "Positive"


@pytest.mark.parametrize("typed, why", [
    ("Inconclusive", "not a clear result"), ("Sample void", "not a clear result"),
    ("hello", "no recognised result"), ("Detected; influenza not detected", "both"),
])
def test_unclear_text_is_an_error_for_the_cell(typed, why):
    result, problems = one("first_rt_pcr_result", typed)
    [problem] = problems
    assert (problem.severity, problem.row, problem.column) == (
        "error", 2, "1st RT-PCR result (Negative = 0, Positive = 1)")
    assert why in problem.reason and result.records == []


def test_a_negative_lab_text_makes_a_negative_patient_on_both_templates():
    swabs = run(sheet_of("negative", [{"swab_date": "2020-04-01", "swab_status": "Not detected"}]),
                "negative")
    assert swabs.problems == [] and swabs.records[0].cleaned["any_positive_swab"] is False
    assert swabs.records[0].cleaned["latest_swab_status"] == "Negative"
    final = run(sheet_of("positive", [{"final_covid_status": "No SARS-CoV-2 RNA detected"}], PEOPLE))
    assert final.problems == [] and final.records[0].cleaned["final_covid_status"] == "Negative"
