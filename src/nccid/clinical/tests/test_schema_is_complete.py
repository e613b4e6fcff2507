"""The schema holds every column the reference names, with the exact header text sites know."""

import pytest

from nccid.clinical.schema import KINDS, get_template, normalise_header, strip_legend, templates

# Every header of docs (shared/reference/clinical-templates.md), as written there.
REFERENCE_HEADERS = {
    "positive": [
        "NHS/CHI Number", "Hospital (Internal) Number", "Hospital", "Age",
        "Sex (Male = 1, Female = 0)",
        "Smoking status (Never = 0, Ex-smoker = 1, Current = 2, Unknown = 3)",
        "Pack year history", "Ethnicity", "Date of Positive Covid Swab",
        "Date of acquisition of 1st RT-PCR", "Date of acquisition of 2nd RT-PCR",
        "Date of result of 1st RT-PCR", "Date of result of 2nd RT-PCR", "Date of admission",
        "Date of ITU admission", "Date of intubation", "Date of 1st CXR", "Date of 2nd CXR",
        "Date last known alive", "Date of death", "PMH hypertension", "PMH CKD",
        "PMH diabetes mellitus type II", "PMH h1pertension", "PMH diabetes mellitus TYPE II",
        "PMH diabetes mellitus TYPE I", "If CKD, stage", "PMH CVS disease", "PMH Lung disease",
        "Current ACEi use", "Current Angiotension receptor blocker use", "Current NSAID used",
        "Duration of symptoms", "Respiratory rate on admission", "Heart rate on admission",
        "FiO2", "PaO2", "O2 saturation", "Systolic BP", "Diastolic BP",
        "Temperature on admission", "NEWS2 score on arrival", "WCC on admission",
        "Lymphocyte count", "Platelet count", "CRP", "D-dimer",
        "Fibrinogen  if d-dimer not performed", "Ferritin", "Urea", "Creatinine",
        "Troponin I", "Troponin T", "APACHE score on ITU arrival", "1st RT-PCR result",
        "2nd RT-PCR result", "CXR severity", "CXR severity 3", "COVID CODE", "COVID CODE 2",
        "Final COVID Status", "ITU admission", "Intubation", "Death",
    ],
    "negative": ["NHS/CHI Number", "Hospital (Internal) Number", "Hospital", "Swab date", "Swab status"],
    "isaric": [
        "NHS/CHI Number", "Hospital (Internal) Number", "Hospital", "Date of symptom onset",
        "Date of admission", "Date of outcome", "Outcome", "Chronic cardiac disease",
        "Hypertension", "Chronic pulmonary disease", "Asthma", "Chronic kidney disease",
        "Moderate/severe liver disease", "Chronic neurological disorder", "Malignant neoplasm",
        "HIV", "Obesity", "Diabetes", "Rheumatological disorder", "Dementia", "Malnutrition",
        "Respiratory rate at admission", "SpO2 at admission", "On room air at admission",
        "Glasgow Coma Scale at admission", "Urea at admission", "CRP at admission",
        "Supplemental oxygen", "Non-invasive ventilation", "Invasive ventilation", "ECMO",
        "ICU admission", "Corticosteroids", "Antivirals", "ISARIC 4C mortality score",
    ],
}

# Names docs/architecture.md promises ("Cleaned clinical fields").
ARCHITECTURE_FIELDS = {
    "positive": ["age", "sex", "ethnicity", "date_of_positive_covid_swab", "date_of_admission",
                 "date_of_itu_admission", "date_of_intubation", "date_of_death",
                 "date_last_known_alive", "date_of_1st_cxr", "itu_admission", "intubation", "death",
                 "final_covid_status", "smoking_status", "pmh_hypertension"],
    "isaric": ["date_of_symptom_onset", "date_of_admission", "date_of_outcome", "outcome",
               "isaric_4c_score_supplied"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_reference_header_is_recognised(kind):
    template = get_template(kind)
    missing = [h for h in REFERENCE_HEADERS[kind] if template.column_for(h) is None]
    assert missing == []


@pytest.mark.parametrize("kind", ["positive", "isaric"])
def test_cleaned_field_names_match_the_architecture(kind):
    fields = {c.field for c in get_template(kind).columns}
    assert set(ARCHITECTURE_FIELDS[kind]) - fields == set()


def test_historical_spellings_map_to_their_fields():
    positive = get_template("positive")
    assert positive.column_for("PMH h1pertension").field == "pmh_hypertension"
    assert positive.column_for("CXR severity 3").field == "cxr_severity_2"
    assert positive.column_for("PMH diabetes mellitus TYPE II").field == "pmh_diabetes_mellitus_type_2"
    assert positive.column_for("PMH diabetes mellitus TYPE I").field == "pmh_diabetes_mellitus_type_1"


def test_template_headers_keep_exact_spacing_and_codes():
    headers = get_template("positive").headers
    assert "Fibrinogen  if d-dimer not performed" in headers  # two spaces, as sites know it
    assert headers[:8] == [  # the sheet layout the reference describes
        "NHS/CHI Number", "Hospital (Internal) Number", "Hospital", "Age",
        "Sex (Male = 1, Female = 0)",
        "Smoking status (Never = 0, Ex-smoker = 1, Current = 2, Unknown = 3)",
        "Pack year history", "PMH hypertension (No = 0, Yes = 1, Unknown = 2)",
    ]


def test_header_matching_ignores_case_spacing_and_legend_only():
    assert normalise_header("  PMH  HYPERTENSION (No = 0, Yes = 1)") == "pmh hypertension"
    assert strip_legend("Hospital (Internal) Number") == "Hospital (Internal) Number"
    assert strip_legend(
        "PMH Lung disease (No = 0, Other = 5 (please specify), Unknown = 6)") == "PMH Lung disease"


def test_every_column_is_typed_and_coded_columns_have_labels():
    for template in templates().values():
        for column in template.columns:
            assert column.type in ("identifier", "text", "integer", "decimal", "date", "code")
            if column.type == "code":
                assert column.codes.codes, column.header
            if column.units:
                assert column.unit, f"{column.header}: alternative units need a canonical unit"


def test_units_and_conversions_are_declared():
    positive = get_template("positive")
    d_dimer = positive.field("d_dimer")
    assert d_dimer.unit == "mg/L"
    assert d_dimer.units["ng/mL"] == (0.001, 0.0) and d_dimer.units["µg/L"] == (0.001, 0.0)
    fio2 = positive.field("fio2")
    assert fio2.unit == "%" and fio2.text_values["BLUE"] == 24 and fio2.text_values["GREEN"] == 60
    assert positive.field("temperature").min == 25 and positive.field("temperature").max == 45


def test_fields_reference_is_up_to_date():
    from nccid.clinical.describe import FIELDS_MD
    from nccid.clinical.schema import describe

    assert FIELDS_MD.read_text(encoding="utf-8") == describe(), (
        "regenerate with: python -m nccid.clinical.describe")
