"""A header's own bracket is the site's word on its column. A unit the column takes is how its
values are read (over the site's declared unit); a unit it does not take, or codes other than
the template's, refuse the file before any value is read: "CRP (mg/dL)" 5 was stored as
5 mg/L, "Sex (Male = 0, Female = 1)" 0 as Female. The bracket is never repeated."""

import pytest

from nccid.clinical import reader
from nccid.clinical.reader import SpreadsheetRejected
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, run, sheet_under_header

TEMPLATE = get_template("positive")


@pytest.mark.parametrize("field, header, typed, stored", [
    ("crp", "CRP (mg/dL)", 5, 50),
    ("creatinine", "Creatinine (mg/dL)", 1.2, 106.104),
    ("pao2", "PaO2 (mmHg)", 75, 9.9992),
    ("temperature", "Temperature on admission (°F)", 101, 38.3333),
    ("fibrinogen", "Fibrinogen  if d-dimer not performed (mg/dL)", 300, 3),
    ("age", "Age (years)", 40, 40),
    ("crp", "CRP (MG / L)", 5, 5),  # the template's unit, in other case and spacing
])
def test_a_unit_the_column_takes_is_how_its_values_are_read(field, header, typed, stored):
    result = run(sheet_under_header(field, header, typed))
    assert result.problems == [] and result.records[0].cleaned[field] == pytest.approx(stored)


def test_the_headers_unit_wins_over_the_sites_declared_unit():
    result = run(sheet_under_header("d_dimer", "D-dimer (µg/mL)", 0.5), declared_units={"d_dimer": "ng/mL"})
    assert result.records[0].cleaned["d_dimer"] == 0.5  # not 0.0005: µg/mL, as the header says


def test_a_declared_unit_under_the_templates_header_is_said_once_per_column():
    result = run(sheet_under_header("crp", "CRP (mg/L)", 5), declared_units={"crp": "mg/dL"})
    assert result.records[0].cleaned["crp"] == 50
    letter = reader._column_letter([c.field for c in TEMPLATE.template_columns()].index("crp"))
    assert result.sheet_warnings == [
        f"column {letter} ('CRP') is read in mg/dL, the unit your site declared (the header says "
        "mg/L): a header naming its unit, such as 'CRP (mg/dL)', is read in that unit"]


@pytest.mark.parametrize("field, header, letter, expected", [
    ("sex", "Sex (Male = 0, Female = 1)", "E", "Male = 1, Female = 0"),
    ("death", "Death (Yes = 0, No = 1)", "BG", "No = 0, Yes = 1"),
    ("smoking_status", "Smoking status (Never = 1, Ex-smoker = 2, Current = 3, Unknown = 0)", "F",
     "Never = 0, Ex-smoker = 1, Current = 2, Unknown = 3"),
])
def test_codes_other_than_the_templates_refuse_the_file(field, header, letter, expected):
    with pytest.raises(SpreadsheetRejected) as refused:
        run(sheet_under_header(field, header, 0))
    label = TEMPLATE.field(field).label
    assert str(refused.value) == (
        f"column {letter} is the template's '{label}' column, but its header does not give the "
        f"template's codes ({expected}): recode its values to the template's codes and use the "
        f"template's header '{TEMPLATE.field(field).header}', so that no value is read under a "
        "code it does not mean")


@pytest.mark.parametrize("header", ["Sex (M = 1, F = 0)", "sex (male=1,female=0)",
                                    "Sex (0 = Female, 1 = Male)", "Sex (M/F)", "Sex",
                                    "Gender", "Gender (M/F)"])  # what many sites' systems call it
def test_the_templates_codes_in_other_words_are_accepted(header):
    result = run(sheet_under_header("sex", header, 0))
    assert result.problems == [] and result.records[0].cleaned["sex"] == "Female"


def test_a_unit_the_column_does_not_take_refuses_the_file_without_repeating_it():
    with pytest.raises(SpreadsheetRejected) as refused:
        run(sheet_under_header("age", "Age (months)", 18))
    assert str(refused.value) == (
        "column D is the template's 'Age' column, but its header states a unit this column "
        "does not take (it takes values in years): convert the values and name their unit in "
        "the header, or use the template's header 'Age'")


def test_a_bracket_that_is_no_unit_is_warned_without_repeating_it():
    person = PEOPLE[30]
    result = run(sheet_under_header("age", f"Age ({person.given_name} {person.family_name})", 18))
    assert result.records[0].cleaned["age"] == 18
    assert result.sheet_warnings == [
        "column D ('Age') has a bracket in its header that is neither a unit this column takes "
        "nor the template's codes: its values were read as under the template's header 'Age' "
        "(in years); check that this is what its values mean"]


def test_a_number_column_without_a_unit_takes_no_unit_in_its_header():
    with pytest.raises(SpreadsheetRejected, match=r"\(it takes a plain number, without a unit\)"):
        run(sheet_under_header("pack_year_history", "Pack year history (years)", 20))
