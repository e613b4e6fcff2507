"""Cohort filters select the right patients, studies and images, training set only, audited."""

from __future__ import annotations

from datetime import date

import pytest

from nccid.accounts.models import AuditEvent
from nccid.research.cohort import (
    Cohort,
    CohortError,
    CohortFilter,
    RelativeDate,
    ScopeError,
    compile_filter,
    select_cohort,
)


def expected(world, patient_ok, image_ok=None):
    """Counts computed in plain Python over the world's own records."""
    training = [p for p in world.patients if p["set_name"] == "training" and patient_ok(p)]
    names = {p["pseudonym"] for p in training}
    images = [i for i in world.images if i["pseudonym"] in names and (image_ok is None or image_ok(i))]
    if image_ok is not None:
        names = {i["pseudonym"] for i in images}
    return len(names), len({i["study_uid"] for i in images}), len(images)


def clinical_of(world, pseudonym):
    return next(c["cleaned"] for c in world.clinical if c["pseudonym"] == pseudonym)


def test_no_filter_counts_every_training_patient_and_nothing_else(world, researcher):
    cohort = select_cohort(researcher, CohortFilter(), world.source())
    counts = cohort.counts()
    assert (counts.patients, counts.studies, counts.images) == expected(world, lambda p: True)
    assert set(cohort.images()["pseudonym"]) <= world.pseudonyms("training")
    assert set(cohort.images()["set_name"]) == {"training"}
    assert set(cohort.clinical()["set_name"]) == {"training"}


def test_itu_admitted_ct_within_seven_days_of_positive_swab(world, researcher):
    flt = CohortFilter.from_dict({"modality": ["CT"], "clinical": ["itu_admission=Yes"],
                                  "within": {"field": "date_of_positive_covid_swab", "days": 7}})

    def image_ok(i):
        swab = clinical_of(world, i["pseudonym"])["date_of_positive_covid_swab"]
        return (i["modality"] == "CT" and swab is not None
                and abs((i["study_date"] - date.fromisoformat(swab)).days) <= 7)

    want = expected(world, lambda p: clinical_of(world, p["pseudonym"])["itu_admission"] == "Yes",
                    image_ok)
    assert want[2] > 0, "the fixture must hold such images for this test to mean anything"
    counts = select_cohort(researcher, flt, world.source()).counts()
    assert (counts.patients, counts.studies, counts.images) == want
    # The 30-day-later CT of the same patient is outside the window.
    wider = CohortFilter.from_dict({**flt.to_dict(), "within": {"days": 40}})
    assert select_cohort(researcher, wider, world.source()).counts().images > counts.images


def test_demographic_site_and_date_filters(world, researcher):
    flt = CohortFilter(covid_status=("positive",), sex=("Male", "Female"), age_min=30, age_max=60,
                       site=("RTEST",), study_date_from=date(2020, 3, 1),
                       study_date_to=date(2020, 4, 30))
    want = expected(
        world,
        lambda p: p["covid_status"] == "positive" and 30 <= p["age"] <= 60 and "RTEST" in p["sites"],
        lambda i: i["site"] == "RTEST" and date(2020, 3, 1) <= i["study_date"] <= date(2020, 4, 30))
    counts = select_cohort(researcher, flt, world.source()).counts()
    assert (counts.patients, counts.studies, counts.images) == want
    assert want[0] > 0


def test_numeric_and_date_clinical_conditions(world, researcher):
    flt = CohortFilter.from_dict({"clinical": ["age>=40", "date_of_admission<2020-04-20"]})
    want = expected(world, lambda p: p["age"] >= 40 and date.fromisoformat(
        clinical_of(world, p["pseudonym"])["date_of_admission"]) < date(2020, 4, 20))
    assert select_cohort(researcher, flt, world.source()).counts().patients == want[0]


def test_field_only_in_cleaned_json_is_queried_through_json(world, researcher, tmp_path):
    # 'final_covid_status' is flattened; a made-up field absent everywhere matches nobody.
    flt = CohortFilter.from_dict({"clinical": {"pmh_hypertension": "Yes"}})
    assert select_cohort(researcher, flt, world.source()).counts().patients == 0


def test_user_values_are_parameters_not_sql(world, researcher):
    hostile = "x' OR 1=1 --"
    flt = CohortFilter(site=(hostile,), clinical=(), ethnicity=(hostile,))
    compiled = compile_filter(flt, ("training",), set())
    assert hostile.upper() not in compiled.ctes and hostile not in compiled.ctes
    assert select_cohort(researcher, CohortFilter(ethnicity=(hostile,)),
                         world.source()).counts().patients == 0
    with pytest.raises(CohortError, match="no record in the catalogue is from such a site"):
        select_cohort(researcher, flt, world.source())  # a site no record names: refused
    with pytest.raises(CohortError, match="not a cleaned clinical field"):
        compile_filter(CohortFilter.from_dict({"clinical": ['age" OR 1=1 --=1']}), ("training",), set())


def test_validation_set_cannot_be_compiled_or_granted(world, researcher):
    with pytest.raises(ScopeError):
        compile_filter(CohortFilter(), ("training", "validation"), set())
    with pytest.raises(ScopeError):
        Cohort(CohortFilter(), ("validation",), world.source())
    researcher.research_sets = ["training", "validation"]
    cohort = select_cohort(researcher, CohortFilter(), world.source())
    assert cohort.sets == ("training",)
    assert set(cohort.patients()["set_name"]) == {"training"}


def test_only_researchers_may_query(world, make_user):
    with pytest.raises(ScopeError):
        select_cohort(make_user("uploader"), CohortFilter(), world.source())
    with pytest.raises(ScopeError):
        select_cohort(make_user("data-manager"), CohortFilter(), world.source())
    assert select_cohort(make_user("admin"), CohortFilter(), world.source()).counts().patients > 0


def test_every_query_is_audited_with_filter_and_counts(world, researcher):
    flt = CohortFilter(modality=("xray",))
    counts = select_cohort(researcher, flt, world.source()).counts()
    event = AuditEvent.objects.get(action="research.cohort", username="rita")
    assert event.detail["filter"] == {"modality": ["xray"]}
    assert event.detail["images"] == counts.images and event.detail["patients"] == counts.patients
    assert event.pseudonym == ""


def test_bad_filters_say_what_is_wrong():
    with pytest.raises(CohortError, match="unknown filter field"):
        CohortFilter.from_dict({"colour": "red"})
    with pytest.raises(CohortError, match="study_date_from"):
        CohortFilter.from_dict({"study_date_from": "02/04/2020"})
    with pytest.raises(CohortError, match="covid status"):
        CohortFilter.from_dict({"covid_status": "maybe"})
    with pytest.raises(CohortError, match="empty"):
        CohortFilter(age_min=50, age_max=40)
    with pytest.raises(CohortError, match="line 1"):
        CohortFilter.from_json("{not json")


def test_filter_round_trips_through_json():
    flt = CohortFilter(covid_status=("positive",), modality=("CT",), study_date_from=date(2020, 4, 1),
                       within=RelativeDate(days_before=0, days_after=7),
                       clinical=CohortFilter.from_dict({"clinical": ["death=Yes"]}).clinical)
    assert CohortFilter.from_dict(flt.to_dict()) == flt
    assert CohortFilter.from_dict({"modality": ["ct", "XRAY"]}).modality == ("CT", "xray")


@pytest.mark.parametrize("column", ["cleaned", "national"])
def test_the_catalogues_own_json_columns_are_no_clinical_fields(world, researcher, column):
    # 'national' (the national-format files) answered every patient for 'national!=x'.
    flt = CohortFilter.from_dict({"clinical": [f"{column}!=x"]})
    with pytest.raises(CohortError, match="clinical field"):
        select_cohort(researcher, flt, world.source()).counts()
