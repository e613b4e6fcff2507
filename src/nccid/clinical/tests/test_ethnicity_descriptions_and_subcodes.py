"""Ethnicity: the NHS Data Dictionary descriptions and the published sub-codes map exactly;
missing markers are Unknown; other words are read most-specific-first with a warning (the code
is kept, not the text); anything else is an error for the cell."""

import pytest

from .helpers import one


@pytest.mark.parametrize("typed, code, group", [
    ("White and Black Caribbean", "D", "Mixed/Multiple"), ("White and Black African", "E", "Mixed/Multiple"),
    ("White and Asian", "F", "Mixed/Multiple"), ("Mixed - White and Asian", "F", "Mixed/Multiple"),
    ("Indian or British Indian", "H", "Asian"), ("Pakistani or British Pakistani", "J", "Asian"),
    ("Bangladeshi or British Bangladeshi", "K", "Asian"), ("Asian or Asian British - Indian", "H", "Asian"),
    ("Black British", "PD", "Black"), ("British Asian", "LH", "Asian"), ("White - British", "A", "White"),
    ("white british", "A", "White"), ("Black or Black British - African", "N", "Black"),
    ("Other Ethnic Groups - Chinese", "R", "Asian"), ("Any other ethnic group", "S", "Other"),
])
def test_official_descriptions_map_to_their_code(typed, code, group):
    result, problems = one("ethnicity", typed)
    assert problems == []
    assert (result.records[0].data["ethnicity"], result.records[0].cleaned["ethnicity"]) == (code, group)


@pytest.mark.parametrize("typed, group", [
    ("C2", "White"), ("CA", "White"), ("CY", "White"), ("GA", "Mixed/Multiple"), ("GF", "Mixed/Multiple"),
    ("LA", "Asian"), ("LK", "Asian"), ("PA", "Black"), ("PE", "Black"), ("SA", "Other"), ("SE", "Other"),
])
def test_published_subcodes_take_their_group(typed, group):
    result, problems = one("ethnicity", typed)
    assert problems == [] and result.records[0].cleaned["ethnicity"] == group


@pytest.mark.parametrize("typed, code", [
    ("NA", "99"), ("N/A", "99"), ("NK", "99"), ("Not known", "99"), ("unknown", "99"), ("99", "99"),
    ("Not stated", "Z"), ("NS", "Z"), ("Z", "Z"),
])
def test_missing_markers_are_unknown(typed, code):
    result, problems = one("ethnicity", typed)
    assert problems == []
    assert (result.records[0].data["ethnicity"], result.records[0].cleaned["ethnicity"]) == (code, "Unknown")


@pytest.mark.parametrize("typed", ["ND", "DK", "CI", "CZ", "LL", "NA1", "zzz", "White Asian", "Caucasian Asian"])
def test_unpublished_codes_and_unclear_text_are_errors(typed):
    result, problems = one("ethnicity", typed)
    [problem] = problems
    assert (problem.severity, problem.row, problem.column) == ("error", 2, "Ethnicity")
    assert result.records == []


@pytest.mark.parametrize("typed, code, group", [
    ("Black African", "N", "Black"), ("White other", "C", "White"), ("Caucasian", "C3", "White"),
    ("Asian Indian", "H", "Asian"), ("Mixed", "GF", "Mixed/Multiple"),
])
def test_other_words_are_read_most_specific_first_with_a_warning(typed, code, group):
    result, problems = one("ethnicity", typed)
    [problem] = problems
    assert problem.severity == "warning" and f"read as {group} (code {code})" in problem.reason
    record = result.records[0]
    assert (record.data["ethnicity"], record.cleaned["ethnicity"]) == (code, group)
    assert record.flags == ["ethnicity"]
