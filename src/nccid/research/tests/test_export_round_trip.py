"""Exports hold the training cohort only, in the bucket layout, with checksums that match."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pandas as pd
import pydicom
import pytest

from nccid.accounts.models import AuditEvent
from nccid.research import staging
from nccid.research.cohort import CohortFilter, ScopeError
from nccid.research.export import ExportError, export_cohort, read_manifest
from nccid.synthetic.leakscan import find_leaks

from .world import build_world


def test_folder_export_round_trips_against_the_warehouse(world, researcher, tmp_path):
    out = tmp_path / "export"
    result = export_cohort(researcher, CohortFilter(), out, source=world.source())
    manifest = read_manifest(out)
    training = [i for i in world.images if i["set_name"] == "training"]
    assert result.counts.images == len(training)

    for image in training:
        size, sha = manifest[image["storage_key"]]
        original = world.warehouse.read(image["storage_key"])
        assert (size, sha) == (len(original), hashlib.sha256(original).hexdigest()) \
            == (image["size"], image["sha256"])
        assert (out / image["storage_key"]).read_bytes() == original
    # Every file is in the manifest with its true checksum, and nothing else is on disk.
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(manifest) | {"manifest.csv"}
    for key, (size, sha) in manifest.items():
        data = (out / key).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha)
    # Bucket layout: metadata JSON and clinical JSON beside the images.
    assert any(k.startswith("training/xray-metadata/") and k.endswith(".json") for k in manifest)
    assert any(k.startswith("training/data/") and k.endswith(".json") for k in manifest)


def test_export_holds_no_validation_row_and_no_identifier(world, researcher, tmp_path):
    out = tmp_path / "export"
    export_cohort(researcher, CohortFilter(), out, source=world.source())
    validation = world.pseudonyms("validation")
    assert validation and not [p for p in out.rglob("*") if "validation" in p.as_posix()]
    images = pd.read_parquet(out / "images.parquet")
    clinical = pd.read_csv(out / "clinical.csv")
    assert set(images["set_name"]) == {"training"} and set(clinical["set_name"]) == {"training"}
    assert not (set(images["pseudonym"]) | set(clinical["pseudonym"])) & validation
    assert set(images["pseudonym"]) == world.pseudonyms("training")
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert not [p for p in validation if p.encode() in everything]
    assert find_leaks([out], world.identifiers()) == []


def test_zip_export_has_the_same_tree_and_verified_checksums(world, researcher, tmp_path):
    out = tmp_path / "cohort.zip"
    flt = CohortFilter(modality=("CT",))
    result = export_cohort(researcher, flt, out, formats="csv,dicom", source=world.source())
    manifest = read_manifest(out)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert names == set(manifest) | {"manifest.csv"}
        for key, (size, sha) in manifest.items():
            data = zf.read(key)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha)
        dcm = sorted(n for n in names if n.endswith(".dcm"))
        assert len(dcm) == result.counts.images > 0
        assert all(n.startswith("training/ct/") for n in dcm)
        ds = pydicom.dcmread(io.BytesIO(zf.read(dcm[0])))
        assert ds.Modality == "CT"
        assert "images.parquet" not in names and "images.csv" in names


def test_corrupt_object_stops_the_export_and_leaves_nothing(researcher, tmp_path):
    small = build_world(tmp_path / "w", n_people=2)
    victim = next(i for i in small.images if i["set_name"] == "training")
    path = small.warehouse.root / victim["storage_key"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    for out in (tmp_path / "folder", tmp_path / "c.zip"):
        with pytest.raises(ExportError, match="does not match its catalogue checksum"):
            export_cohort(researcher, CohortFilter(), out, source=small.source())
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(staging.PREFIX)]
    failed = AuditEvent.objects.filter(action="research.export.failed")
    assert failed.count() == 2 and victim["storage_key"] in failed[0].detail["error"]


def test_export_is_audited_and_needs_a_researcher(world, researcher, make_user, tmp_path):
    result = export_cohort(researcher, CohortFilter(covid_status=("positive",)), tmp_path / "e",
                           formats=["parquet"], source=world.source())
    event = AuditEvent.objects.get(action="research.export")
    assert event.username == "rita" and event.detail["filter"] == {"covid_status": ["positive"]}
    assert event.detail["images"] == result.counts.images and event.detail["files"] == result.files
    with pytest.raises(ScopeError):
        export_cohort(make_user("uploader"), CohortFilter(), tmp_path / "x", source=world.source())


def test_existing_destination_and_bad_format_are_refused(world, researcher, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_cohort(researcher, CohortFilter(), tmp_path / "full", source=world.source())
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="choose from"):
        export_cohort(researcher, CohortFilter(), tmp_path / "y", formats="tiff",
                      source=world.source())


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted():
    """A site's free text (a manufacturer, a model name) reaches the images table: opened in a
    spreadsheet, a cell starting with = + - @, a tab or a return would run as a formula."""
    import pyarrow as pa

    from nccid.research.export import _csv_ready

    batch = pa.RecordBatch.from_pydict({
        "manufacturer": ['=HYPERLINK("http://x.example","Open")', "@SUM(1+1)", "+1", "-2+3",
                         "\tx", "Acme", None],
        "rows": [1, 2, 3, 4, 5, 6, 7],
        "codes": [["=1"], [], None, ["a"], ["b"], ["c"], ["d"]],
    })
    out = _csv_ready(batch).to_pydict()
    assert out["manufacturer"] == ['\'=HYPERLINK("http://x.example","Open")', "'@SUM(1+1)", "'+1",
                                   "'-2+3", "'\tx", "Acme", None]
    assert out["rows"] == [1, 2, 3, 4, 5, 6, 7]
    assert out["codes"][0] == '["=1"]'  # JSON text starts with a bracket: nothing to quote


def test_an_object_missing_from_the_warehouse_fails_the_export_audited_with_its_key(researcher, tmp_path):
    # A withdrawal deletes objects before the catalogue's rows: the catalogue names a lost object.
    small = build_world(tmp_path / "w", n_people=2)
    victim = next(i for i in small.images if i["set_name"] == "training")
    (small.warehouse.root / victim["storage_key"]).unlink()
    for out in (tmp_path / "folder", tmp_path / "c.zip"):
        with pytest.raises(ExportError) as caught:
            export_cohort(researcher, CohortFilter(), out, source=small.source())
        assert str(caught.value) == f"{victim['storage_key']}: missing from the warehouse"
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(staging.PREFIX)]
    failed = AuditEvent.objects.filter(action="research.export.failed")
    assert [e.detail["error"] for e in failed] == [f"{victim['storage_key']}: missing from the warehouse"] * 2
    assert not [e for e in failed if str(small.root) in e.detail["error"]]


class _FailingRead(io.RawIOBase):
    def readable(self):
        return True

    def readinto(self, buffer):
        raise OSError(5, "Input/output error", "/srv/warehouse/some/path")


def test_a_read_error_mid_object_is_an_audited_export_error(world, researcher, tmp_path):
    victim = next(i for i in world.images if i["set_name"] == "training")
    source = world.source()
    opener = source.open_object
    source.open_object = lambda key: _FailingRead() if key == victim["storage_key"] else opener(key)
    with pytest.raises(ExportError, match="could not be read from the warehouse") as caught:
        export_cohort(researcher, CohortFilter(), tmp_path / "out", source=source)
    assert victim["storage_key"] in str(caught.value) and "/srv/" not in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert AuditEvent.objects.filter(action="research.export.failed").count() == 1
