"""A coded column's header legend that says the template's codes, also naming the values the
column takes as unknown ("Sex (Male = 1, Female = 0, Unknown = 2)"), or in words sites use
("Ex = 1", "Not known = 3", "Alive = 0, Dead = 1", ">1 = 4"), or listing the codes bare
("If CKD, stage (2, 3, 4, 5)", "ITU admission (0/1)"), is the template's legend: each had
refused the whole file. Other codes still refuse it."""

import pytest

from nccid.clinical.reader import SpreadsheetRejected
from nccid.clinical.schema import get_template

from .helpers import run, sheet_under_header

TEMPLATE = get_template("positive")


@pytest.mark.parametrize("field, header, typed, stored", [
    ("sex", "Sex (Male = 1, Female = 0, Unknown = 2)", 0, "Female"),
    ("sex", "Sex (Male = 1, Female = 0, Other = 2, Unknown = 3)", 1, "Male"),
    ("sex", "Sex (Male - 1, Female - 0)", 1, "Male"),
    ("sex", "Sex (0/1)", 1, "Male"),
    ("smoking_status", "Smoking status (Never = 0, Ex = 1, Current = 2, Unknown = 3)", 1, "Ex-smoker"),
    ("smoking_status", "Smoking status (Never smoked = 0, Ex-smoker = 1, Current smoker = 2, "
                       "Not known = 3)", 3, "Unknown"),
    ("pmh_hypertension", "PMH hypertension (No = 0, Yes = 1, Not known = 2)", 2, "Unknown"),
    ("current_acei_use", "Current ACEi use (No = 0, Yes = 1, Unk = 2)", 1, "Yes"),
    ("pmh_cvs_disease", "PMH CVS disease (No = 0, MI = 1, Angina = 2, Stroke = 3, >1 = 4)", 4,
     "More than one"),
    ("pmh_lung_disease", "PMH Lung disease (No = 0, COPD = 1, Fibrosis = 2, CF = 3, Asthma = 4, "
                         "Other = 5, Unknown = 6)", 3, "Cystic fibrosis"),
    ("covid_code", "COVID CODE (Normal = 0, Classic = 1, Indeterminate = 2, Non-COVID = 3)", 1,
     "Classic/Probable"),
    ("death", "Death (Alive = 0, Dead = 1)", 1, "Yes"),
    ("ckd_stage", "If CKD, stage (2, 3, 4, 5)", 3, "Stage 3"),
    ("ckd_stage", "If CKD, stage (2-5)", 3, "Stage 3"),
    ("itu_admission", "ITU admission (0/1)", 1, "Yes"),
])
def test_a_legend_saying_the_templates_codes_is_accepted(field, header, typed, stored):
    result = run(sheet_under_header(field, header, typed))
    assert result.sheet_warnings == []
    assert result.records[0].cleaned[field] == stored


def test_the_words_of_such_legends_are_accepted_in_cells_too():
    result = run(sheet_under_header("smoking_status", TEMPLATE.field("smoking_status").header, "Ex"))
    assert result.problems == [] and result.records[0].cleaned["smoking_status"] == "Ex-smoker"
    result = run(sheet_under_header("pmh_cvs_disease", TEMPLATE.field("pmh_cvs_disease").header, ">1"))
    assert result.problems == [] and result.records[0].cleaned["pmh_cvs_disease"] == "More than one"


@pytest.mark.parametrize("field, header", [
    ("sex", "Sex (Male = 1, Female = 2)"),            # the NHS's 1/2 coding: 2 is not Female here
    ("sex", "Sex (Male = 1, Female = 0, Unknown = 1)"),
    ("sex", "Sex (1/2)"),
    ("death", "Death (Alive = 1, Dead = 0)"),
    ("ckd_stage", "If CKD, stage (1-5)"),
])
def test_other_codes_still_refuse_the_file(field, header):
    with pytest.raises(SpreadsheetRejected, match="does not give the template's codes"):
        run(sheet_under_header(field, header, 1))
