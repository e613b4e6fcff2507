"""A clinical `=` test finds a patient however the site typed the number (38 or 38.0) or the
yes/no (Yes, or a derived JSON true); a field or a `within` key that does not exist is an
error naming the known ones, never an empty or default cohort."""

from __future__ import annotations

import pytest

from nccid.research.cohort import (
    MAX_AGE,
    CohortError,
    CohortFilter,
    compile_filter,
    known_fields,
    select_cohort,
)

from .world import build_world, write_catalogue

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def typed_world(tmp_path_factory):
    """Temperatures stored as the intake writes them (38.0, 38, 37.5) and a derived boolean."""
    world = build_world(tmp_path_factory.mktemp("typed"), n_people=8)
    for n, record in enumerate(world.clinical):
        record["cleaned"]["temperature"] = (38.0, 38, 37.5)[n % 3]
        record["cleaned"]["any_positive_swab"] = n % 4 == 0  # training is every other
    write_catalogue(world)
    return world


def patients(world, researcher, *conditions: str) -> int:
    flt = CohortFilter.from_dict({"clinical": list(conditions)})
    cohort = select_cohort(researcher, flt, world.source())
    try:
        return cohort.counts().patients
    finally:
        cohort.close()


def training_where(world, test) -> int:
    return len({r["pseudonym"] for r in world.clinical
                if r["set_name"] == "training" and test(r["cleaned"])})


@pytest.mark.parametrize("written", ["temperature=38", "temperature=38.0", "temperature=38.00"])
def test_a_number_matches_however_the_site_typed_it(typed_world, researcher, written):
    want = training_where(typed_world, lambda c: c["temperature"] == 38)
    assert want >= 2 and patients(typed_world, researcher, written) == want


def test_not_equal_to_a_number_compares_numbers(typed_world, researcher):
    want = training_where(typed_world, lambda c: c["temperature"] != 38)
    assert patients(typed_world, researcher, "temperature!=38") == want


@pytest.mark.parametrize(("written", "value"), [("Yes", True), ("true", True), ("No", False),
                                                ("FALSE", False)])
def test_yes_and_no_match_a_derived_boolean(typed_world, researcher, written, value):
    want = training_where(typed_world, lambda c: c["any_positive_swab"] is value)
    assert want > 0
    assert patients(typed_world, researcher, f"any_positive_swab={written}") == want
    others = training_where(typed_world, lambda c: c["any_positive_swab"] is not value)
    assert patients(typed_world, researcher, f"any_positive_swab!={written}") == others


def test_yes_still_matches_a_typed_yes(typed_world, researcher):
    want = training_where(typed_world, lambda c: c["itu_admission"] == "Yes")
    assert want > 0 and patients(typed_world, researcher, "itu_admission=yes") == want


def test_a_text_value_still_compares_as_text(typed_world, researcher):
    want = training_where(typed_world, lambda c: c["ethnicity"] == "White")
    assert want > 0 and patients(typed_world, researcher, "ethnicity=white") == want


def test_an_unknown_clinical_field_is_refused_naming_the_known_ones():
    flt = CohortFilter.from_dict({"clinical": ["temprature=38"]})
    with pytest.raises(CohortError, match="'temprature' is not a clinical field") as raised:
        compile_filter(flt, ("training",), {"any_positive_swab"})
    assert "temperature" in str(raised.value) and "any_positive_swab" in str(raised.value)


def test_template_and_derived_fields_are_known_identifiers_are_not():
    assert {"temperature", "spo2", "latest_swab_status", "any_positive_swab", "isaric_4c_score"} <= known_fields()
    assert not {"nhs_number", "hospital_number"} & known_fields()
    flt = CohortFilter.from_dict({"clinical": ["staging_note=x"]})
    compile_filter(flt, ("training",), {"staging_note"})  # a column the catalogue has is known
    with pytest.raises(CohortError, match="'nhs_number' is not a clinical field"):
        compile_filter(CohortFilter.from_dict({"clinical": ["nhs_number=1"]}), ("training",), set())


def test_an_unknown_within_field_is_refused():
    flt = CohortFilter.from_dict({"within": {"field": "date_of_swab", "days": 3}})
    with pytest.raises(CohortError, match="'date_of_swab' is not a clinical field"):
        compile_filter(flt, ("training",), set())


def test_a_misspelt_within_key_is_refused_not_defaulted_to_seven_days():
    with pytest.raises(CohortError, match="within: unknown key.*'days_befor'"):
        CohortFilter.from_dict({"within": {"days_befor": 0, "days_after": 0}})


def test_a_null_within_field_is_the_default_date():
    flt = CohortFilter.from_dict({"within": {"field": None, "days": 3}})
    assert flt.within.field == "date_of_positive_covid_swab" and flt.within.days_before == 3


@pytest.mark.parametrize(("data", "field"), [
    ({"within": {"days": float("inf")}}, "within.days"),
    ({"within": {"days_before": float("nan")}}, "within.days_before"),
    ({"within": {"days": 1.5}}, "within.days"),
    ({"within": {"days": True}}, "within.days"),
    ({"age_min": 10**40}, "age_min"),
    ({"age_max": -(10**40)}, "age_max"),
    ({"age_min": "151"}, "age_min"),
    ({"age_min": 2.5}, "age_min"),
])
def test_bad_numbers_are_a_cohort_error_naming_the_field(data, field):
    with pytest.raises(CohortError, match=f"^{field}: "):
        CohortFilter.from_dict(data)


def test_whole_numbers_written_as_floats_or_text_are_read():
    flt = CohortFilter.from_dict({"age_min": 30.0, "age_max": str(MAX_AGE),
                                  "within": {"days": 7.0}})
    assert (flt.age_min, flt.age_max, flt.within.days_after) == (30, MAX_AGE, 7)


def test_an_age_out_of_range_is_refused_however_the_filter_is_made():
    with pytest.raises(CohortError, match=f"age_max: 200 is out of range \\(0-{MAX_AGE} years\\)"):
        CohortFilter(age_max=200)
