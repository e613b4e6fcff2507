"""Data managers hand the validation set's images to an AI product, and its predictions, named
from the export's images.csv, are scored: every image, no label, audited, no one else."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile

import pytest
from typer.testing import CliRunner

from nccid.accounts.models import AuditEvent
from nccid.cli.main import typer_app
from nccid.research import cli as research_cli
from nccid.research.cohort import ScopeError
from nccid.research.export import read_manifest
from nccid.research.services import validate_predictions
from nccid.research.validation_images import IMAGE_COLUMNS, export_validation_images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def validation_images(world, folder=None):
    return [i for i in world.images
            if i["set_name"] == "validation" and folder in (None, i["folder"])]


def image_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_every_validation_image_goes_with_its_ids_and_no_label(validation_world, data_manager,
                                                                 tmp_path):
    world, out = validation_world, tmp_path / "for-vendor"
    result = export_validation_images(data_manager, out, source=world.source())

    expected = validation_images(world)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    images = {f for f in files if f.endswith(".dcm")}
    assert images == {i["storage_key"] for i in expected}
    headers = {f for f in files if f.endswith(".json") and "-metadata/" in f}
    assert len(headers) == len(images)
    # Nothing of the training set, no clinical record, no patients table.
    assert all(f.startswith("validation/") for f in images | headers)
    assert files - images - headers == {"images.csv", "PREDICTIONS.txt", "validation.json",
                                        "manifest.csv"}

    listed = (out / "images.csv").read_text()
    rows = image_rows(listed)
    assert tuple(rows[0]) == IMAGE_COLUMNS
    assert {r["sop_instance_uid"] for r in rows} == {i["sop_uid"] for i in expected}
    assert {r["pseudonym"] for r in rows} == world.pseudonyms("validation")
    assert all((out / r["key"]).is_file() for r in rows)
    for text in (listed, (out / "validation.json").read_text()):
        assert not any(word in text.lower() for word in ("covid", "positive", "negative", "status"))

    manifest = read_manifest(out)
    assert set(manifest) == files - {"manifest.csv"}
    for key, (size, sha) in manifest.items():
        data = (out / key).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha)

    counts = {"patients": len(world.pseudonyms("validation")),
              "studies": len({i["study_uid"] for i in expected}), "images": len(expected)}
    assert result.counts.as_dict() == counts
    event = AuditEvent.objects.get(action="research.validate.images")
    assert event.username == "dora" and event.detail["sets"] == ["validation"]
    assert {k: event.detail[k] for k in counts} == counts


def test_predictions_named_from_the_export_are_scored(validation_world, data_manager, tmp_path):
    world = validation_world
    export_validation_images(data_manager, tmp_path / "v.zip", source=world.source())
    with zipfile.ZipFile(tmp_path / "v.zip") as zf:
        rows = image_rows(zf.read("images.csv").decode())
    patients = sorted({r["pseudonym"] for r in rows})
    by_patient = "pseudonym,score\n" + "".join(f"{p},{n}\n" for n, p in enumerate(patients))
    by_image = "sop_instance_uid,score\n" + "".join(
        f"{r['sop_instance_uid']},{n}\n" for n, r in enumerate(rows))

    for text, unit, count in ((by_patient, "patient", len(patients)), (by_image, "image", len(rows))):
        report = validate_predictions(data_manager, text, 0.5, world.source()).report
        assert (report.unit, report.overall["n"]) == (unit, count)


def test_a_modality_and_a_zip(validation_world, data_manager, tmp_path):
    world = validation_world
    export_validation_images(data_manager, tmp_path / "ct.zip", ["ct"], world.source())
    keys = set(read_manifest(tmp_path / "ct.zip"))
    ct = {i["storage_key"] for i in validation_images(world, "ct")}
    assert ct and {k for k in keys if k.endswith(".dcm")} == ct
    with zipfile.ZipFile(tmp_path / "ct.zip") as zf:
        assert json.loads(zf.read("validation.json"))["modality"] == ["CT"]


@pytest.mark.parametrize("role", ["researcher", "uploader"])
def test_no_one_else_gets_the_validation_images(validation_world, make_user, role, tmp_path):
    from nccid.accounts.models import Site

    site = Site.objects.create(code="RTEST", name="Test", ae_title="RTEST") if role == "uploader" else None
    user = make_user(role, site=site, research_sets=["training", "validation"]
                     if role == "researcher" else None)
    with pytest.raises(ScopeError):
        export_validation_images(user, tmp_path / "v", source=validation_world.source())
    assert not (tmp_path / "v").exists()
    assert not AuditEvent.objects.filter(action__startswith="research.validate.images").exists()


def test_the_command_exports_for_data_managers_only(validation_world, data_manager, researcher,
                                                    tmp_path, monkeypatch):
    monkeypatch.setattr(research_cli, "_source", validation_world.source)
    runner = CliRunner()

    done = runner.invoke(typer_app, ["validation-images", "--user", "dora", "-o", str(tmp_path / "v")])
    assert done.exit_code == 0, done.output
    assert "Exported the validation set's" in done.output and (tmp_path / "v" / "images.csv").is_file()

    refused = runner.invoke(typer_app, ["validation-images", "--user", "rita", "-o", str(tmp_path / "r")])
    assert refused.exit_code != 0 and "only data managers" in str(refused.exception)
    again = runner.invoke(typer_app, ["validation-images", "--user", "dora", "-o", str(tmp_path / "v")])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    none = runner.invoke(typer_app, ["validation-images", "--user", "dora", "--modality", "MR",
                                     "-o", str(tmp_path / "mr")])
    assert "holds no images of modality MR" in str(none.exception) and not (tmp_path / "mr").exists()


def test_a_withdrawal_names_the_validation_images_handed_out(validation_world, data_manager,
                                                               tmp_path):
    """The images went to a product: the data manager withdrawing one of its patients is told."""
    from django.utils import timezone

    from nccid.withdrawal.services import _handed_out

    before = timezone.now()
    export_validation_images(data_manager, tmp_path / "v", source=validation_world.source())
    named = [(h.action, h.username, h.sets) for h in _handed_out(before, "validation")]
    assert named == [("research.validate.images", "dora", ("validation",))]
    assert not _handed_out(before, "training")
