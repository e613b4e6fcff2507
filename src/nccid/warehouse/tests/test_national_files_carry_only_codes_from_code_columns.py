"""A code column's value in a national file is one of its list's codes, sub-codes or words for
unknown: the record's ``data`` holds what the site typed, and an older release kept free text
there as typed (an ethnicity written out with a relative's name), which the national files
would otherwise have handed to researchers (synthetic names only)."""

from __future__ import annotations

from nccid.warehouse.national import national_files

FREE_TEXT = "White - Mary Bloggs-Smith (daughter)"


def _positive(data: dict) -> dict:
    [entry] = national_files("positive", "NCCID-TEST", "RTEST",
                             {"date_of_positive_covid_swab": "2020-04-02"}, data)
    return entry["record"]


def test_free_text_typed_in_a_code_column_is_left_out():
    record = _positive({"ethnicity": FREE_TEXT, "sex": "Declined per Dr Jo Bloggs"})
    assert "Bloggs" not in repr(record)
    assert "Ethnicity" not in record and "Sex" not in record


def test_codes_sub_codes_and_unknown_words_are_kept_as_typed():
    record = _positive({"ethnicity": "CA", "sex": "2"})
    assert (record["Ethnicity"], record["Sex"]) == ("CA", "2")
    assert _positive({"ethnicity": "A", "sex": "1"})["Sex"] == "1"


def test_a_label_typed_for_a_code_is_written_as_its_code():
    [entry] = national_files("negative", "NCCID-TEST", "RTEST",
                             {"swabs": [{"date": "2020-04-02", "status": "Positive"}]},
                             {"swabs": [{"date": "02/04/2020", "status": "Positive"}]})
    assert entry["record"]["SwabStatus"] == "1"


def test_a_swab_status_of_free_text_is_left_out():
    [entry] = national_files("negative", "NCCID-TEST", "RTEST",
                             {"swabs": [{"date": "2020-04-02", "status": "Positive"}]},
                             {"swabs": [{"date": "02/04/2020", "status": "per Dr Jo Bloggs"}]})
    assert "SwabStatus" not in entry["record"]
