"""Every validation error class: the row, the column header, the value as typed and a reason."""

import datetime as dt

import pytest

from nccid.clinical.schema import get_template
from nccid.clinical.validation import ConfigurationError, isaric_4c_score
from nccid.synthetic.people import spaced

from .helpers import PEOPLE, csv_bytes, one, positive_row, run, sheet_of, xlsx_bytes


def only(problems, severity=None):
    chosen = [p for p in problems if severity is None or p.severity == severity]
    assert len(chosen) == 1, [p.message for p in problems]
    return chosen[0]


def test_unknown_code_names_row_column_value_and_the_codes():
    result, problems = one("smoking_status", 5)
    problem = only(problems)
    assert problem.message == ("Row 2, Smoking status: '5' is not one of Never = 0, Ex-smoker = 1, "
                               "Current = 2, Unknown = 3")
    assert problem.column == "Smoking status (Never = 0, Ex-smoker = 1, Current = 2, Unknown = 3)"
    assert problem.value == "5" and problem.severity == "error"
    assert result.rejected_rows == {2} and result.records == []


def test_all_errors_are_returned_at_once_across_rows():
    headers, good = positive_row(PEOPLE[0], age=50)
    _, bad1 = positive_row(PEOPLE[1], age="old", smoking_status=9)
    _, bad2 = positive_row(PEOPLE[2], date_of_admission="yesterday")
    result = run(xlsx_bytes(headers, [good, bad1, bad2]))
    assert [(p.row, p.label) for p in result.errors] == [
        (3, "Age"), (3, "Smoking status"), (4, "Date of admission")]
    assert result.accepted_rows == 1 and result.rejected_rows == {3, 4}


def test_invalid_nhs_number_is_rejected_without_echoing_it():
    number = PEOPLE[0].nhs_number
    wrong = number[:9] + str((int(number[9]) + 1) % 10)
    result, problems = one("nhs_number", wrong)
    problem = only(problems)
    assert problem.label == "NHS/CHI Number" and problem.value == ""
    assert "check digit" in problem.reason and wrong not in problem.message
    assert result.rejected_rows == {2}


def test_missing_nhs_number_is_an_error():
    problem = only(one("nhs_number", None)[1])
    assert problem.reason.startswith("is missing") and problem.value == ""


def test_spaced_and_float_nhs_numbers_are_accepted_and_pseudonymised():
    person = PEOPLE[0]
    headers, row1 = positive_row(person, nhs_number=spaced(person.nhs_number), age=40)
    _, row2 = positive_row(PEOPLE[1], nhs_number=float(PEOPLE[1].nhs_number), age=41)
    result = run(xlsx_bytes(headers, [row1, row2]))
    assert result.errors == []
    pseudonyms = [r.pseudonym for r in result.records]
    assert all(p.startswith("NCCID-") for p in pseudonyms) and len(set(pseudonyms)) == 2
    assert result.vault_numbers[pseudonyms[0]] == person.nhs_number


def test_hospital_number_is_hashed_and_never_kept():
    from nccid.identity.keys import Keyring

    keyring = Keyring(b"t" * 32)
    result = run(xlsx_bytes(*_single(age=30)), keyring=keyring)
    record = result.records[0]
    assert record.hospital_hash == keyring.hospital_hash("RTEST", PEOPLE[0].hospital_number)
    assert PEOPLE[0].hospital_number not in repr(record) and PEOPLE[0].nhs_number not in repr(record)


def _single(**values):
    headers, row = positive_row(**values)
    return headers, [row]


def test_hospital_number_longer_than_20_characters_is_rejected_blank():
    problem = only(one("hospital_number", "X" * 21)[1])
    assert problem.reason == "is longer than 20 characters" and problem.value == ""


def test_text_in_a_number_field():
    problem = only(one("heart_rate", "fast")[1])
    assert (problem.label, problem.value, problem.reason) == ("Heart rate on admission", "fast", "'fast' is not a number")


def test_nan_and_infinity_in_a_number_field_are_not_numbers():
    # Python's float() parses them, but JSON cannot store them: the row is rejected.
    for typed in ("nan", "inf", "-Infinity"):
        problem = only(one("heart_rate", typed)[1])
        assert (problem.severity, problem.reason) == ("error", f"'{typed}' is not a number")


def test_decimal_in_a_whole_number_field():
    problem = only(one("age", 65.889)[1])
    assert problem.reason == "'65.889' is not a whole number"


@pytest.mark.parametrize("typed, expected", [
    ("2020-03-31", "2020-03-31"), ("31/03/2020", "2020-03-31"), ("31.03.2020", "2020-03-31"),
    (dt.datetime(2020, 3, 31, 14, 5), "2020-03-31"), (43921, "2020-03-31"), ("43921", "2020-03-31"),
    ("01/04/2020", "2020-04-01"),
])
def test_dates_in_the_accepted_forms(typed, expected):
    result, problems = one("date_of_admission", typed)
    assert problems == [] and result.records[0].cleaned["date_of_admission"] == expected


def test_site_declared_month_first_dates():
    result, problems = one("date_of_admission", "04/01/2020", date_format="MDY")
    assert problems == [] and result.records[0].cleaned["date_of_admission"] == "2020-04-01"


def test_date_invalid_under_the_declared_format_is_refused_not_guessed():
    problem = only(one("date_of_admission", "03/31/2020")[1])  # DMY site, MM/DD typed
    assert problem.reason.startswith("'03/31/2020' is not a valid date in this site's declared format DD/MM/YYYY")
    assert "there is no month 31" in problem.reason


def test_ambiguous_date_without_a_declared_format_is_refused():
    problem = only(one("date_of_admission", "03/04/2020", date_format="")[1])
    assert "ambiguous" in problem.reason and "3 April 2020" in problem.reason and "4 March 2020" in problem.reason
    result, problems = one("date_of_admission", "13/04/2020", date_format="")
    assert problems == [] and result.records[0].cleaned["date_of_admission"] == "2020-04-13"


@pytest.mark.parametrize("typed", ["31/02/2020", "2020-02-30", "[Text] - 2020-03-20", "soon"])
def test_unparseable_dates(typed):
    problem = only(one("date_of_admission", typed)[1])
    assert problem.severity == "error" and problem.value == typed


def test_implausible_value_is_kept_raw_flagged_and_missing_when_cleaned():
    result, problems = one("temperature", 52)
    problem = only(problems, "warning")
    assert "outside the plausible range 25 to 45 °C" in problem.reason
    record = result.records[0]
    assert record.data["temperature"] == 52 and record.cleaned["temperature"] is None
    assert record.flags == ["temperature"] and result.rejected_rows == set()


def test_future_date_is_a_warning():
    result, problems = one("date_of_death", (dt.date.today() + dt.timedelta(days=30)).isoformat())
    assert only(problems, "warning").label == "Date of death"
    assert result.records[0].cleaned["date_of_death"] is None


@pytest.mark.parametrize("typed, label, flagged", [
    (1, "Male", False), (0, "Female", False), ("M", "Male", False), ("f", "Female", False),
    (2, "Unknown", True), ("3", "Unknown", True),
])
def test_sex_codes_and_letters(typed, label, flagged):
    result, problems = one("sex", typed)
    assert result.records[0].cleaned["sex"] == label
    assert (result.records[0].flags == ["sex"]) is flagged and len(problems) == int(flagged)


@pytest.mark.parametrize("typed, group", [
    ("A", "White"), ("C", "White"), ("CA", "White"), ("LB", "Asian"), ("R", "Asian"),
    ("N", "Black"), ("E", "Mixed/Multiple"), ("S", "Other"), ("Z", "Unknown"),
    ("White - British", "White"), ("Caribbean", "Black"), ("Any other Asian background", "Asian"),
])
def test_ethnicity_codes_subcodes_and_text_to_groups(typed, group):
    result, problems = one("ethnicity", typed)
    assert problems == [] and result.records[0].cleaned["ethnicity"] == group


def test_unrecognised_ethnicity_text_is_an_error_for_the_cell():
    result, problems = one("ethnicity", "zzz")
    problem = only(problems, "error")
    assert (problem.row, problem.label, problem.value) == (2, "Ethnicity", "zzz")
    assert "NHS ethnic category code" in problem.reason and result.records == []


@pytest.mark.parametrize("typed, label", [
    ("RNA DETECTED (SARS-CoV-2)", "Positive"), ("RNA NOT DETECTED", "Negative"), (1, "Positive"),
    ("0", "Negative"), ("Positive", "Positive"),
])
def test_rt_pcr_result_text(typed, label):
    result, problems = one("first_rt_pcr_result", typed)
    assert problems == [] and result.records[0].cleaned["first_rt_pcr_result"] == label


def test_lung_disease_other_with_text_keeps_the_code_only():
    result, _ = one("pmh_lung_disease", "5 - Lung Ca")
    assert result.records[0].data["pmh_lung_disease"] == "5"
    assert result.records[0].cleaned["pmh_lung_disease"] == "Other"


@pytest.mark.parametrize("typed, units, expected", [
    (500, {"d_dimer": "ng/mL"}, 0.5), (750, {"d_dimer": "µg/L"}, 0.75), (1.2, {}, 1.2),
    ("900 ng/mL", {}, 0.9),
])
def test_d_dimer_units_convert_to_mg_per_litre(typed, units, expected):
    result, problems = one("d_dimer", typed, declared_units=units)
    assert problems == [] and result.records[0].cleaned["d_dimer"] == expected


@pytest.mark.parametrize("typed, units, expected", [
    (28, {}, 28), (0.28, {}, 28), ("blue", {}, 24), ("Green", {}, 60), ("10L", {}, 61),
    (2, {"fio2": "L/min"}, 29), (0.4, {"fio2": "fraction"}, 40),
])
def test_fio2_percent_decimal_litres_and_venturi_colours(typed, units, expected):
    result, problems = one("fio2", typed, declared_units=units)
    assert problems == [] and result.records[0].cleaned["fio2"] == expected


def test_temperature_in_fahrenheit_is_converted():
    result, _ = one("temperature", 98.6, declared_units={"temperature": "°F"})
    assert result.records[0].cleaned["temperature"] == pytest.approx(37.0, abs=0.01)


def test_unknown_typed_unit_is_an_error():
    problem = only(one("crp", "12 furlongs")[1])
    assert "unit 'furlongs' is not one of mg/L, mg/dL" in problem.reason


def test_site_declaring_an_unknown_unit_refuses_the_file():
    with pytest.raises(ConfigurationError, match="declared unit for D-dimer is 'parsecs'"):
        one("d_dimer", 1, declared_units={"d_dimer": "parsecs"})


def test_required_column_blank_is_an_error():
    data = sheet_of("negative", [{"swab_date": "2020-04-01"}])
    problem = only(run(data, "negative").problems)
    assert (problem.label, problem.reason) == ("Swab status", "is required")


def test_second_row_for_the_same_patient_is_rejected():
    headers, row = positive_row(PEOPLE[0], age=50)
    result = run(xlsx_bytes(headers, [row, list(row)]))
    problem = only(result.problems)
    assert problem.row == 3 and "same patient as row 2" in problem.reason


def test_negative_rows_merge_into_one_record_with_the_swab_list():
    person = PEOPLE[0]
    rows = [{"swab_date": "2020-04-01", "swab_status": 0}, {"swab_date": "2020-04-09", "swab_status": 1},
            {"swab_date": "2020-04-05", "swab_status": 0}]
    data = sheet_of("negative", rows, [person, person, person])
    result = run(data, "negative")
    assert result.errors == [] and len(result.records) == 1
    cleaned = result.records[0].cleaned
    assert [s["date"] for s in cleaned["swabs"]] == ["2020-04-01", "2020-04-05", "2020-04-09"]
    assert cleaned["latest_swab_status"] == "Positive" and cleaned["any_positive_swab"] is True
    assert result.records[0].rows == [2, 3, 4]


def test_isaric_4c_score_follows_the_published_table():
    # Knight et al. 2020: age 72 (6) + male (1) + 2 comorbidities (2) + RR 31 (2)
    # + SpO2 90 (2) + GCS 14 (2) + urea 14 (1) + CRP 120 (2) = 18
    cleaned = {"age": 72, "sex": "Male", "chronic_cardiac_disease": "Yes", "diabetes": "Yes",
               "hypertension": "Yes", "asthma": "Yes", "respiratory_rate": 31, "spo2": 90, "gcs": 14,
               "urea": 14, "crp": 120}
    assert isaric_4c_score(cleaned) == 18
    low = {"age": 30, "sex": "Female", "respiratory_rate": 16, "spo2": 97, "gcs": 15, "urea": 5, "crp": 10}
    assert isaric_4c_score(low) == 0
    assert isaric_4c_score({**low, "urea": 14.5, "crp": 50}) == 4
    assert isaric_4c_score({**low, "gcs": None}) is None


def test_isaric_supplied_score_mismatch_is_a_warning():
    values = {"age": 30, "sex": 0, "respiratory_rate": 16, "spo2": 97, "gcs": 15, "urea": 5, "crp": 10,
              "isaric_4c_score_supplied": 3}
    result = run(sheet_of("isaric", [values]), "isaric")
    problem = only(result.problems, "warning")
    assert problem.label == "ISARIC 4C mortality score" and "differs from the score computed" in problem.reason
    assert result.records[0].cleaned["isaric_4c_score"] == 0
    assert result.records[0].cleaned["isaric_4c_score_supplied"] == 3


def test_csv_values_validate_like_xlsx_cells():
    headers, row = positive_row(age="54", sex="M", date_of_admission="02/05/2020", crp="12.5")
    result = run(csv_bytes(headers, [["" if v is None else v for v in row]]))
    assert result.errors == []
    cleaned = result.records[0].cleaned
    assert (cleaned["age"], cleaned["sex"], cleaned["date_of_admission"], cleaned["crp"]) == (
        54, "Male", "2020-05-02", 12.5)


def test_no_identifier_appears_in_any_problem():
    person = PEOPLE[3]
    headers, row = positive_row(person, age="x", hospital_number=person.hospital_number + "Z" * 20)
    result = run(xlsx_bytes(headers, [row]))
    text = repr([p.as_dict() for p in result.problems])
    assert person.nhs_number not in text and person.hospital_number not in text


def test_every_positive_field_is_present_in_the_cleaned_view():
    result, _ = one("age", 44)
    fields = {c.field for c in get_template("positive").columns if not c.identifier}
    assert set(result.records[0].cleaned) == fields


@pytest.mark.parametrize("field", ["hospital", "ethnicity"])
def test_nhs_number_typed_in_a_text_column_is_refused_and_not_echoed(field):
    number = spaced(PEOPLE[5].nhs_number)
    result, problems = one(field, f"White {number}" if field == "ethnicity" else number)
    problem = only(problems)
    assert "looks like an NHS/CHI number" in problem.reason and problem.value == ""
    assert result.records == [] and number not in repr(result.problems)


@pytest.mark.parametrize("field, typed", [
    ("crp", "spaced"), ("date_of_admission", "spaced"), ("smoking_status", "spaced"),
    ("ferritin", "float"),  # out of range: would be kept raw as a warning, but not this
])
def test_nhs_number_in_another_column_is_never_echoed_or_kept(field, typed):
    number = spaced(PEOPLE[5].nhs_number) if typed == "spaced" else float(PEOPLE[5].nhs_number)
    result, problems = one(field, number)
    problem = only(problems)
    assert problem.value == "" and "looks like an NHS/CHI number" in problem.reason
    shown = repr([p.as_dict() for p in result.problems])
    assert PEOPLE[5].nhs_number not in shown and spaced(PEOPLE[5].nhs_number) not in shown
    assert result.records == [] and result.rejected_rows == {2}


@pytest.mark.parametrize("typed", ["{number}", "seen at {number} clinic", "{lower}"])
def test_the_rows_hospital_number_typed_in_a_text_column_is_refused_and_not_echoed(typed):
    """It would reach researchers with the record (the hospital number itself is only kept
    as a keyed hash)."""
    number = PEOPLE[0].hospital_number
    result, problems = one("hospital", typed.format(number=number, lower=number.lower()))
    problem = only(problems)
    assert "holds the row's hospital number" in problem.reason and problem.value == ""
    assert result.records == [] and number not in repr(result.problems)


def test_a_text_column_may_hold_other_text_with_digits():
    result, problems = one("hospital", "Ward 12, Royal Example")
    assert problems == [] and len(result.records) == 1


def test_words_that_could_be_a_name_are_not_echoed_but_numbers_and_single_words_are():
    """Problems are kept with the upload in the main database: a name typed in the wrong
    column must not be, while '45kg' or 'maybe' still show the site what to correct."""
    _, problems = one("age", "Fakename Jones")
    problem = only(problems)
    assert problem.value == "" and "value not shown" in problem.reason
    assert "Fakename" not in repr(problem.as_dict())
    for typed in ("maybe", "45kg"):
        _, problems = one("age", typed)
        assert only(problems).value == typed
