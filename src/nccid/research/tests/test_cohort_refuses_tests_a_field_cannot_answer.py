"""A window around a field that holds no date, or an order (<, >) on a field that holds
neither numbers nor dates, matched no one (TRY_CAST gave NULL) and was audited as a query:
each is now refused, naming the fields that can answer it, by Python, the API and the CLI.
So is a value a field cannot hold (``date_of_death=5``, ``age=old``, ``itu_admission=maybe``,
``outcome=Discharged``), which matched no one too: the refusal names the field, the value and
what the field takes. Which field holds what comes from the templates' column types and code
lists and the catalogue's types."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nccid.accounts.models import AuditEvent
from nccid.research import api
from nccid.research import cli as research_cli
from nccid.research.cohort import CohortError, CohortFilter, compile_filter, select_cohort

pytestmark = pytest.mark.django_db


def compiled(data: dict):
    return compile_filter(CohortFilter.from_dict(data), ("training",), set())


@pytest.mark.parametrize("name", ["age", "hospital", "itu_admission", "any_positive_swab"])
def test_a_window_around_a_field_that_is_no_date_is_refused_naming_the_dates(name):
    with pytest.raises(CohortError, match=f"^within: {name} is not a date field; date fields: "
                                          ) as raised:
        compiled({"within": {"field": name, "days": 7}})
    assert "date_of_admission" in str(raised.value) and "latest_swab_date" in str(raised.value)
    assert "age" not in str(raised.value).split("date fields: ")[1].split(", ")


@pytest.mark.parametrize("condition", ["itu_admission>5", "hospital<=3", "sex>=2020-01-01",
                                       "any_positive_swab>0"])
def test_an_order_on_a_field_of_neither_numbers_nor_dates_is_refused(condition):
    with pytest.raises(CohortError, match="holds neither .* number and date fields: ") as raised:
        compiled({"clinical": [condition]})
    listed = str(raised.value).split("number and date fields: ")[1].split(", ")
    assert {"age", "temperature", "isaric_4c_score", "date_of_death"} <= set(listed)
    assert "itu_admission" not in listed


@pytest.mark.parametrize(("condition", "kind"), [("age>2020-01-01", "a number"),
                                                 ("date_of_death<5", "a date")])
def test_an_order_against_a_value_of_the_other_kind_is_refused(condition, kind):
    with pytest.raises(CohortError, match=f"is {kind}; compare it with"):
        compiled({"clinical": [condition]})


@pytest.mark.parametrize(("condition", "said"), [
    ("date_of_death=5", "date_of_death is a date; compare it with a YYYY-MM-DD date, not '5'"),
    ("latest_swab_date!=abc", "latest_swab_date is a date; compare it with a YYYY-MM-DD date, "
                              "not 'abc'"),
    ("date_of_admission>abc", "date_of_admission is a date; compare it with a YYYY-MM-DD date, "
                              "not 'abc'"),
    ("age=old", "age is a number; compare it with a number, not 'old'"),
    ("age>old", "age is a number; compare it with a number, not 'old'"),
    ("temperature!=yes", "temperature is a number; compare it with a number, not 'yes'"),
    ("isaric_4c_score=", "isaric_4c_score is a number; compare it with a number, not ''"),
    ("itu_admission=maybe", "itu_admission holds No, Yes (also written false, true); compare it "
                            "with one of them, not 'maybe'"),
    ("itu_admission=1", "itu_admission holds No, Yes"),  # a code: records hold its label
    ("any_positive_swab=maybe", "any_positive_swab holds true, false (also written no, yes)"),
    ("pmh_hypertension!=perhaps", "pmh_hypertension holds No, Yes, Unknown"),
    ("outcome=Discharged", "outcome holds Discharged alive, Death, Transfer, Still in hospital, "
                           "Palliative discharge; compare it with one of them, not 'Discharged'"),
    ("sex=X", "sex holds Female, Male, Unknown"),
    ("ethnicity=Whit", "ethnicity holds White, Mixed/Multiple, Asian, Black, Other, Unknown"),
    ("latest_swab_status=Detected", "latest_swab_status holds Negative, Positive"),
])
def test_a_value_the_field_cannot_hold_is_refused_naming_field_value_and_kind(condition, said):
    with pytest.raises(CohortError) as raised:
        compiled({"clinical": [condition]})
    assert str(raised.value).startswith(f"clinical condition {condition!r}: ")
    assert said in str(raised.value)


def test_values_a_field_holds_still_compile_in_any_case_and_spelling():
    compiled({"clinical": ["date_of_death=2020-04-11", "latest_swab_date!=2020-03-01",
                           "age=63", "temperature!=37.5", "itu_admission=yes", "itu_admission=TRUE",
                           "death!=false", "any_positive_swab=No", "any_positive_swab=true",
                           "pmh_hypertension=unknown", "outcome=discharged ALIVE",
                           "sex=Unknown", "ethnicity=mixed/multiple", "smoking_status=Ex-smoker",
                           "ckd_stage=Stage 3", "hospital=anything", "latest_swab_status=negative"]})


def test_a_date_field_equal_to_a_date_finds_its_patients(world, researcher):
    day = next(r["cleaned"]["date_of_admission"] for r in world.clinical
               if r["set_name"] == "training")
    want = {r["pseudonym"] for r in world.clinical if r["set_name"] == "training"
            and r["cleaned"]["date_of_admission"] == day}
    others = {r["pseudonym"] for r in world.clinical if r["set_name"] == "training"
              and r["cleaned"]["date_of_admission"] != day}
    for condition, patients in ((f"date_of_admission={day}", want),
                                (f"date_of_admission!={day}", others)):
        cohort = select_cohort(researcher, CohortFilter.from_dict({"clinical": [condition]}),
                               world.source())
        try:
            assert set(cohort.patients()["pseudonym"]) == patients
        finally:
            cohort.close()


@pytest.mark.parametrize("value", ["Whit", "1", "A"])
def test_an_ethnicity_no_patient_can_have_is_refused_naming_the_groups(value):
    with pytest.raises(CohortError, match=f"^ethnicity {value!r}: use one of White, "
                                          "Mixed/Multiple, Asian, Black, Other, Unknown"):
        CohortFilter.from_dict({"ethnicity": ["Asian", value]})


def test_orders_on_numbers_and_dates_and_windows_on_dates_still_compile():
    compiled({"clinical": ["age>=40", "temperature<37.5", "isaric_4c_score>3",
                           "date_of_admission<2020-04-20", "latest_swab_date>=2020-03-01",
                           "itu_admission=Yes", "age=63"],
              "within": {"field": "date_of_admission", "days": 3}})


@pytest.mark.parametrize("name", ["set_name", "pseudonym", "cleaned", "national"])
def test_a_reserved_name_is_refused_with_the_known_fields(name):
    with pytest.raises(CohortError, match="not a cleaned clinical field name; known fields: "
                                          ".*date_of_admission"):
        compiled({"clinical": [f"{name}=x"]})


@pytest.mark.parametrize("body", [{"within": {"field": "age", "days": 7}},
                                  {"clinical": ["itu_admission>5"]}])
def test_the_api_answers_400_and_audits_nothing(ask, world, monkeypatch, body):
    monkeypatch.setattr(api, "source_factory", world.source)
    answer = ask(body)
    assert answer.status_code == 400, answer.content
    assert "date_of_positive_covid_swab" in answer.json()["detail"]
    assert not AuditEvent.objects.filter(action="research.cohort").exists()


@pytest.mark.parametrize(("body", "said"), [
    ({"clinical": ["date_of_death=5"]},
     "clinical condition 'date_of_death=5': date_of_death is a date; compare it with a "
     "YYYY-MM-DD date, not '5'"),
    ({"clinical": {"age": "old"}},
     "clinical condition 'age=old': age is a number; compare it with a number, not 'old'"),
    ({"clinical": {"itu_admission": "maybe"}}, "itu_admission holds No, Yes"),
    ({"ethnicity": "Whit"}, "ethnicity 'Whit': use one of White, "),
])
def test_the_api_refuses_a_value_the_field_cannot_hold_with_400(ask, world, monkeypatch, body,
                                                                 said):
    monkeypatch.setattr(api, "source_factory", world.source)
    answer = ask(body)
    assert answer.status_code == 400, answer.content
    assert said in answer.json()["detail"]
    assert not AuditEvent.objects.filter(action="research.cohort").exists()


@pytest.fixture
def run(world, researcher, monkeypatch):
    monkeypatch.setattr(research_cli, "_source", world.source)
    from nccid.cli.main import typer_app

    return lambda *args: CliRunner().invoke(typer_app, ["research", "cohort", "--user", "rita",
                                                        *args])


@pytest.mark.django_db(databases=["default", "vault"])
@pytest.mark.parametrize(("args", "said"), [
    (["--within-days", "7", "--of", "age"], "within: age is not a date field; date fields: "),
    (["--clinical", "itu_admission>5"], "itu_admission> "),
    (["--of", "date_of_admission"], "--of date_of_admission needs --within-days N"),
    (["--clinical", "date_of_death=5"], "date_of_death is a date; compare it with a YYYY-MM-DD "
                                        "date, not '5'"),
    (["--clinical", "age>old"], "age is a number; compare it with a number, not 'old'"),
    (["--clinical", "death=maybe"], "death holds No, Yes (also written false, true)"),
    (["--ethnicity", "Whit"], "ethnicity 'Whit': use one of White, "),
])
def test_the_command_line_refuses_in_one_line_and_audits_nothing(run, args, said):
    from nccid.cli.common import UserError

    result = run(*args)
    assert isinstance(result.exception, UserError), result.output
    assert said.strip() in str(result.exception) and "\n" not in str(result.exception)
    assert not AuditEvent.objects.filter(action="research.cohort").exists()


@pytest.mark.django_db(databases=["default", "vault"])
def test_of_names_the_window_date_and_without_it_the_swab_date_is_taken(world, researcher, run):
    def images(*args: str) -> str:
        result = run(*args)
        assert result.exit_code == 0, result.output
        return result.output

    def counted(field: str) -> str:
        flt = CohortFilter.from_dict({"within": {"field": field, "days": 2}})
        cohort = select_cohort(researcher, flt, world.source())
        try:
            counts = cohort.counts()
        finally:
            cohort.close()
        return f"{counts.patients} patients, {counts.studies} studies, {counts.images} images"

    assert counted("date_of_admission") in images("--within-days", "2", "--of", "date_of_admission")
    assert counted("date_of_positive_covid_swab") in images("--within-days", "2")
