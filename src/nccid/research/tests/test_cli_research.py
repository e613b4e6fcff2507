"""The research commands: roles enforced, training set only, user mistakes as one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.research import cli as research_cli

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def run(world, monkeypatch):
    monkeypatch.setattr(research_cli, "_source", world.source)
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(typer_app, [str(a) for a in args])

    return invoke


def test_cohort_counts_and_list_cover_training_only(run, world, researcher):
    result = run("research", "cohort", "--user", "rita", "--modality", "xray", "--list", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    training = [i for i in world.images if i["set_name"] == "training" and i["folder"] == "xray"]
    assert out["counts"]["images"] == len(training) == len(out["images"])
    assert {row["set_name"] for row in out["images"]} == {"training"}
    assert not {row["pseudonym"] for row in out["images"]} & world.pseudonyms("validation")
    assert not [p for p in world.pseudonyms("validation") if p in result.output]


def test_cohort_with_relative_date_and_clinical_field(run, researcher):
    result = run("research", "cohort", "--user", "rita", "--modality", "CT", "--clinical",
                 "itu_admission=Yes", "--within-days", "7")
    assert result.exit_code == 0, result.output
    assert "patients" in result.output and "images" in result.output


def test_roles_are_enforced(run, world, make_user, tmp_path):
    make_user("uploader", username="ulla")
    result = run("research", "cohort", "--user", "ulla")
    assert result.exit_code != 0 and isinstance(result.exception, Exception)
    assert "only researchers" in str(result.exception)
    result = run("research", "cohort", "--user", "nobody")
    assert "no active user" in str(result.exception)


def test_export_and_bad_filter(run, researcher, tmp_path):
    result = run("research", "export", "--user", "rita", "--covid", "positive",
                 "-o", tmp_path / "c.zip", "--format", "csv,dicom")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.zip").exists() and "Exported" in result.output
    bad = run("research", "export", "--user", "rita", "--from", "1/4/2020", "-o", tmp_path / "x")
    assert "study_date_from" in str(bad.exception) and not (tmp_path / "x").exists()


def test_validate(validation_world, data_manager, researcher, tmp_path, monkeypatch):
    monkeypatch.setattr(research_cli, "_source", validation_world.source)
    runner = CliRunner()
    status = {p["pseudonym"]: p["covid_status"] for p in validation_world.patients}
    preds = tmp_path / "predictions.csv"
    preds.write_text("pseudonym,score\n" + "".join(f"{p},{0.7 if status[p] == 'positive' else 0.2}\n"
                                                   for p in sorted(validation_world.pseudonyms("validation"))))
    args = ["validate", str(preds), "-o", str(tmp_path / "report.html"), "--operating-point", "youden"]
    result = runner.invoke(typer_app, [*args, "--user", "dora"])
    assert result.exit_code == 0, result.output
    assert "AUC 1.000" in result.output and (tmp_path / "report.html").read_text().startswith("<!doctype")
    denied = runner.invoke(typer_app, ["validate", str(preds), "--user", "rita", "-o", str(tmp_path / "r2.html")])
    assert "only data managers" in str(denied.exception) and not (tmp_path / "r2.html").exists()


def test_validate_refuses_too_few_patients_as_one_line(run, world, data_manager, tmp_path):
    preds = tmp_path / "one.csv"
    preds.write_text(f"pseudonym,score\n{sorted(world.pseudonyms('validation'))[0]},0.4\n")
    result = run("validate", preds, "--user", "dora", "-o", tmp_path / "report.html")
    assert result.exit_code != 0 and "too few patients to report on" in str(result.exception)
    assert not (tmp_path / "report.html").exists()


def test_modelling_and_teaching(run, world, data_manager, researcher, tmp_path):
    result = run("research", "modelling", "--user", "rita", "-o", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "weekly_counts.csv").exists()

    study = next(i for i in world.images if i["set_name"] == "training")
    result = run("research", "teaching", "add", "Demo", "--user", "dora", "--pseudonym",
                 study["pseudonym"], "--study", study["study_uid"], "--note", "Typical")
    assert result.exit_code == 0, result.output
    listed = run("research", "teaching", "list", "--user", "dora")
    assert "Demo" in listed.output
    result = run("research", "teaching", "export", "Demo", "--user", "dora", "-o", tmp_path / "t")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t" / "index.html").exists()


def test_export_of_an_object_missing_from_the_warehouse_is_one_line(researcher, tmp_path, monkeypatch):
    from nccid.accounts.models import AuditEvent
    from nccid.cli.common import UserError

    from .world import build_world

    small = build_world(tmp_path / "w", n_people=2)
    victim = next(i for i in small.images if i["set_name"] == "training")
    (small.warehouse.root / victim["storage_key"]).unlink()
    monkeypatch.setattr(research_cli, "_source", small.source)
    result = CliRunner().invoke(typer_app, ["research", "export", "--user", "rita",
                                            "-o", str(tmp_path / "c.zip")])
    assert isinstance(result.exception, UserError), result.exception
    assert str(result.exception) == f"{victim['storage_key']}: missing from the warehouse"
    assert not (tmp_path / "c.zip").exists()
    assert AuditEvent.objects.filter(action="research.export.failed").count() == 1


def test_teaching_export_of_an_object_missing_from_the_warehouse_is_one_line(data_manager, tmp_path,
                                                                            monkeypatch):
    from nccid.cli.common import UserError

    from .world import build_world

    small = build_world(tmp_path / "w", n_people=2)
    victim = next(i for i in small.images if i["set_name"] == "training")
    monkeypatch.setattr(research_cli, "_source", small.source)
    runner = CliRunner()
    added = runner.invoke(typer_app, ["research", "teaching", "add", "Lost", "--user", "dora",
                                      "--pseudonym", victim["pseudonym"], "--study", victim["study_uid"]])
    assert added.exit_code == 0, added.output
    (small.warehouse.root / victim["storage_key"]).unlink()
    result = runner.invoke(typer_app, ["research", "teaching", "export", "Lost", "--user", "dora",
                                       "-o", str(tmp_path / "t")])
    assert isinstance(result.exception, UserError), result.exception
    assert str(result.exception) == f"{victim['storage_key']}: missing from the warehouse"
    assert not (tmp_path / "t").exists()


def test_export_to_an_unwritable_place_is_one_line_and_audited(run, researcher, tmp_path):
    from nccid.accounts.models import AuditEvent
    from nccid.cli.common import UserError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run("research", "export", "--user", "rita", "-o", blocker / "out")
    assert isinstance(result.exception, UserError), result.exception
    assert "the export was not written" in str(result.exception)
    assert AuditEvent.objects.get(action="research.export.failed").detail["error"] in (
        "FileExistsError", "NotADirectoryError")


def test_export_shows_the_images_copied_on_a_terminal_only(run, researcher, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from nccid.cli import common

    bars = []
    for terminal in (False, True):
        bars.append(io.StringIO())
        monkeypatch.setattr(common, "err_console",
                            Console(file=bars[-1], force_terminal=terminal, width=120))
        result = run("research", "export", "--user", "rita", "--modality", "CT",
                     "-o", tmp_path / f"ct-{terminal}", "--format", "csv,dicom")
        assert result.exit_code == 0, result.output
        images = json.loads((tmp_path / f"ct-{terminal}" / "cohort.json").read_text())["counts"]["images"]
        assert images > 0 and "Exported " in result.stdout
    assert bars[0].getvalue() == ""
    assert "Copying images" in bars[1].getvalue() and f"{images}/{images}" in bars[1].getvalue()
