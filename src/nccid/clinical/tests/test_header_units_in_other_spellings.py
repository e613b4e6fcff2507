"""A header's unit spelled as sites and keyboards spell it is the template's unit: "×10⁹/L",
"x 10^9/L", "10*9/L", "ºC", "Celsius", "bpm", "micromol/L", "ng/mL FEU". A number range in the
bracket within the column's plausible range ("NEWS2 score on arrival (0-17)") says what the
column takes. Each of these had refused the whole file ("convert the values")."""

import pytest

from nccid.clinical.reader import SpreadsheetRejected
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, run, sheet_under_header, template_row, xlsx_bytes

TEMPLATE = get_template("positive")


@pytest.mark.parametrize("field, header, typed, stored", [
    ("platelet_count", "Platelet count (×10^9/L)", 250, 250),
    ("platelet_count", "Platelet count (x10^9/L)", 250, 250),
    ("platelet_count", "Platelet count (x 10^9/L)", 250, 250),
    ("lymphocyte_count", "Lymphocyte count (x10⁹/L)", 1.2, 1.2),
    ("platelet_count", "Platelet count (10⁹/L)", 250, 250),
    ("wcc", "WCC on admission (10*9/L)", 7, 7),
    ("temperature", "Temperature on admission (ºC)", 38, 38),
    ("temperature", "Temperature on admission (˚C)", 38, 38),
    ("temperature", "Temperature on admission (oC)", 38, 38),
    ("temperature", "Temperature on admission (degrees C)", 38, 38),
    ("temperature", "Temperature on admission (Celsius)", 38, 38),
    ("temperature", "Temperature on admission (Fahrenheit)", 101, 38.3333),
    ("heart_rate", "Heart rate on admission (bpm)", 90, 90),
    ("respiratory_rate", "Respiratory rate on admission (breaths/min)", 20, 20),
    ("respiratory_rate", "Respiratory rate on admission (per min)", 20, 20),
    ("d_dimer", "D-dimer (ng/mL FEU)", 500, 0.5),
    ("d_dimer", "D-dimer (mg/L FEU)", 0.5, 0.5),
    ("d_dimer", "D-dimer (FEU)", 0.5, 0.5),
    ("creatinine", "Creatinine (micromol/L)", 80, 80),
    ("news2_score", "NEWS2 score on arrival (0-17)", 5, 5),
    ("news2_score", "NEWS2 score on arrival (0–17)", 5, 5),
    ("apache_score", "APACHE score on ITU arrival (0-71)", 20, 20),
])
def test_a_unit_in_another_spelling_is_the_columns_unit(field, header, typed, stored):
    result = run(sheet_under_header(field, header, typed))
    assert result.problems == [] and result.sheet_warnings == []
    assert result.records[0].cleaned[field] == pytest.approx(stored)


@pytest.mark.parametrize("field, header, typed", [("gcs", "Glasgow Coma Scale at admission (3 to 15)", 14),
                                                  ("isaric_4c_score_supplied", "ISARIC 4C score (0–21)", 7)])
def test_ranges_like_the_isaric_templates_own_are_accepted(field, header, typed):
    template = get_template("isaric")
    column = template.field(field)
    headers = [header if c is column else c.header for c in template.template_columns()]
    result = run(xlsx_bytes(headers, [template_row(template, PEOPLE[0], {field: typed})]), "isaric")
    assert result.sheet_warnings == [] and result.records[0].data[field] == typed


@pytest.mark.parametrize("field, header", [
    ("crp", "CRP (mmol/L)"),       # urea's unit, not CRP's
    ("age", "Age (months)"),       # a unit no column takes
    ("pack_year_history", "Pack year history (years)"),
    ("news2_score", "NEWS2 score on arrival (%)"),
])
def test_another_known_unit_refuses_the_file(field, header):
    with pytest.raises(SpreadsheetRejected, match="states a unit this column does not take"):
        run(sheet_under_header(field, header, 5))


@pytest.mark.parametrize("field, header", [
    ("news2_score", "NEWS2 score on arrival (0-20)"),   # a range beyond the column's: not a unit
    ("pack_year_history", "Pack year history (pack years)"),
    ("crp", "CRP (lab A)"),
])
def test_a_bracket_that_is_no_known_unit_is_a_warning_naming_the_column(field, header):
    result = run(sheet_under_header(field, header, 5))
    assert result.records and result.records[0].cleaned[field] == 5
    column = TEMPLATE.field(field)
    [warning] = result.sheet_warnings
    assert f"('{column.header}') has a bracket in its header that is neither a unit" in warning
    bracket = header[header.rindex("(") + 1:-1]
    assert bracket not in warning
