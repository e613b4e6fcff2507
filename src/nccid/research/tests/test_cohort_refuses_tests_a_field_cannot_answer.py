"""A window around a field that holds no date, or an order (<, >) on a field that holds
neither numbers nor dates, matched no one (TRY_CAST gave NULL) and was audited as a query:
each is now refused, naming the fields that can answer it, by Python, the API and the CLI.
Which field holds what comes from the templates' column types and the catalogue's."""

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
