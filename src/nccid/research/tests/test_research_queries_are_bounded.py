"""One research request cannot hold a portal worker or the machine's memory for as long as it
likes: the clinical conditions are capped (400 naming the field), each query runs under a
time limit and its connection under a memory limit (503 saying which limit stopped it)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nccid.accounts.models import AuditEvent
from nccid.cli.common import UserError
from nccid.cli.main import typer_app
from nccid.config import reset_settings_cache
from nccid.research import api
from nccid.research import cli as research_cli
from nccid.research.cohort import (
    MAX_CONDITIONS,
    CohortError,
    CohortFilter,
    QueryLimitError,
    select_cohort,
)
from nccid.research.export import export_cohort
from nccid.research.source import Source
from nccid.research.staging import staging_root

pytestmark = pytest.mark.django_db
COUNT = "/api/research/cohort/count"


@pytest.fixture
def limits(monkeypatch):
    """Set the research limits (as an operator would, in the environment) for one test."""
    def set_limits(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"NCCID_RESEARCH_QUERY_{name.upper()}", str(value))
        reset_settings_cache()

    yield set_limits
    monkeypatch.undo()
    reset_settings_cache()


def many_copies(world, distinct: bool) -> Source:
    """The world's catalogue with each image row repeated a trillion times: a catalogue no
    query finishes in a test's lifetime. ``distinct``: every copy is another study (the
    distinct count then needs ever more memory); else the copies add time only."""
    study = "i.study_uid || '.' || r.n" if distinct else "i.study_uid"

    def connect():
        con = world.source().connect()
        con.execute("ALTER VIEW images RENAME TO _images")
        con.execute(f"CREATE VIEW images AS SELECT i.* REPLACE ({study} AS study_uid) "
                    "FROM _images i, range(1000000000000) r(n)")
        return con

    return Source(connect=connect, warehouse=world.warehouse)


def conditions(n: int) -> list[str]:
    return [f"age>{i % 90}" for i in range(n)]


def test_more_conditions_than_the_cap_are_400_naming_the_field(ask, monkeypatch, world):
    monkeypatch.setattr(api, "source_factory", world.source)
    answer = ask({"clinical": conditions(MAX_CONDITIONS + 1)})
    assert answer.status_code == 400, answer.content
    assert answer.json()["detail"].startswith("clinical: ")
    assert str(MAX_CONDITIONS) in answer.json()["detail"]
    assert not AuditEvent.objects.filter(action="research.cohort").exists()
    # The cap itself is answered (one grouped pass over the records, whatever their number).
    assert ask({"clinical": conditions(MAX_CONDITIONS)}).status_code == 200
    # The command line and Python read filters through CohortFilter: the same cap.
    with pytest.raises(CohortError, match=f"clinical: at most {MAX_CONDITIONS} conditions, got 51"):
        CohortFilter.from_dict({"clinical": conditions(MAX_CONDITIONS + 1)})


def test_conditions_may_be_met_by_different_records_of_a_patient(world, researcher):
    """Merged into one pass, each condition still needs some record of the patient, not the
    same one: a positive record with the age, an ISARIC record with the outcome."""
    patient = next(p for p in world.patients if p["set_name"] == "training")

    def connect():
        con = world.source().connect()
        con.execute("ALTER VIEW clinical RENAME TO _clinical")
        con.execute("CREATE VIEW clinical AS SELECT * FROM _clinical UNION ALL BY NAME "
                    "SELECT pseudonym, site, 'isaric' AS kind, set_name, "
                    """'{"outcome": "Discharged alive"}' AS cleaned FROM _clinical """
                    f"WHERE pseudonym = '{patient['pseudonym']}'")  # NCCID- and base32 only
        return con

    flt = CohortFilter.from_dict({"clinical": [f"age={patient['age']}", "outcome=Discharged alive"]})
    cohort = select_cohort(researcher, flt, Source(connect=connect, warehouse=world.warehouse))
    try:
        assert list(cohort.patients()["pseudonym"]) == [patient["pseudonym"]]
    finally:
        cohort.close()


def test_a_query_past_the_time_limit_is_stopped_with_a_clear_503(ask, monkeypatch, world, limits):
    limits(seconds=1)
    monkeypatch.setattr(api, "source_factory", lambda: many_copies(world, distinct=False))
    answer = ask({})
    assert answer.status_code == 503, answer.content
    assert answer.json()["detail"] == (
        "the query ran past the research time limit (1 s) and was stopped: narrow the cohort, "
        "or ask the data manager to raise research_query_seconds")
    assert not AuditEvent.objects.filter(action="research.cohort").exists()


def test_a_query_past_the_memory_limit_is_stopped_with_a_clear_503(ask, monkeypatch, world, limits):
    limits(memory_mb=64)
    monkeypatch.setattr(api, "source_factory", lambda: many_copies(world, distinct=True))
    answer = ask({})
    assert answer.status_code == 503, answer.content
    assert answer.json()["detail"].startswith(
        "the query needed more than the research memory limit (64 MB) and was stopped")
    assert "research_query_memory_mb" in answer.json()["detail"]


def test_an_export_past_the_time_limit_is_stopped_and_leaves_nothing(world, researcher, limits,
                                                                    tmp_path):
    """An export's table query runs under the limit as a count does. Here only the clinical
    table is slow (its rows copied a billion times over, only the first copy in a set), so the
    count is quick and the limit can only stop the table; and the copies are finite (some 20 s
    of scanning on two cores), so an export the limit does not stop ends instead of running
    for ever."""
    limits(seconds=1)
    copies = 1_000_000_000 // len(world.clinical)

    def connect():
        con = world.source().connect()
        con.execute("ALTER VIEW clinical RENAME TO _clinical")
        con.execute("CREATE VIEW clinical AS SELECT c.* REPLACE (CASE WHEN r.n = 0 THEN "
                    f"c.set_name END AS set_name) FROM _clinical c, range({copies}) r(n)")
        return con

    source = Source(connect=connect, warehouse=world.warehouse)
    with pytest.raises(QueryLimitError, match=r"time limit \(1 s\).*research_query_seconds"):
        export_cohort(researcher, CohortFilter(), tmp_path / "out.zip", "parquet", source)
    assert list(tmp_path.iterdir()) == []  # no zip, no staging folder
    failed = AuditEvent.objects.get(action="research.export.failed")
    assert "research_query_seconds" in failed.detail["error"]


def test_an_export_past_the_memory_limit_is_a_clear_503_and_leaves_nothing(
        ask, monkeypatch, world, limits):
    limits(memory_mb=64)
    monkeypatch.setattr(api, "source_factory", lambda: many_copies(world, distinct=True))
    answer = ask({}, url="/api/research/export?formats=parquet")
    assert answer.status_code == 503, answer.content
    assert answer.json()["detail"].startswith(
        "the query needed more than the research memory limit (64 MB) and was stopped")
    assert "research_query_memory_mb" in answer.json()["detail"]
    assert not [p for p in staging_root().rglob("*") if p.is_file()]


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_command_line_export_past_the_memory_limit_is_one_line(world, researcher, limits,
                                                                 monkeypatch, tmp_path):
    limits(memory_mb=64)
    monkeypatch.setattr(research_cli, "_source", lambda: many_copies(world, distinct=True))
    result = CliRunner().invoke(typer_app, ["research", "export", "--user", "rita", "--format",
                                            "parquet", "-o", str(tmp_path / "c.zip")])
    assert isinstance(result.exception, UserError), result.exception
    assert str(result.exception).startswith(
        "the query needed more than the research memory limit (64 MB) and was stopped")
    assert list(tmp_path.iterdir()) == []
