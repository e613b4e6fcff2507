"""The 'nccid deid check' scanner finds planted identifiers in raw files and none after de-identification."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from nccid.imaging.deid.check import Checker, check_paths, mask
from nccid.imaging.deid.cli import register_deid
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register_deid(app)
    return app


def _corpus(tmp_path, deid, kr):
    raw_dir, clean_dir = tmp_path / "raw", tmp_path / "clean"
    raw_dir.mkdir()
    clean_dir.mkdir()
    folk = people(4, seed=5)
    for i, person in enumerate(folk):
        for modality in ("DX", "CT"):
            data = to_bytes(synthetic_instance(person, modality=modality, instance=i + 1))
            (raw_dir / f"{i}-{modality}.dcm").write_bytes(data)
            out, _ = deid.deidentify_bytes(data, pseudonym=kr.pseudonym(person.nhs_number))
            (clean_dir / f"{i}-{modality}.dcm").write_bytes(out)
    (clean_dir / "notes.json").write_text("{}")
    return raw_dir, clean_dir, folk


def test_scanner_finds_planted_identifiers_and_none_after_deidentification(tmp_path, deid, kr):
    raw_dir, clean_dir, folk = _corpus(tmp_path, deid, kr)
    findings, scanned, skipped = check_paths([raw_dir])
    assert scanned == 8 and skipped == 0
    reasons = {f.reason for f in findings}
    for expected in ("person name that is not a pseudonym", "birth date more precise than the year",
                     "NHS/CHI-number-shaped digits with a valid check digit", "UK postcode",
                     "telephone number", "private attribute not on the safe list",
                     "UID not under the keyed 2.25 root (an original UID?)"):
        assert expected in reasons
    keywords = {f.keyword for f in findings}
    assert {"PatientName", "OtherPatientIDs", "PatientAddress", "SOPInstanceUID",
            "MediaStorageSOPInstanceUID", "ReferencedSOPInstanceUID"} <= keywords
    assert any("[0]" in f.tag for f in findings)  # inside a sequence
    for f in findings:  # values are masked, never shown whole
        for person in folk:
            for needle in person.identifiers():
                assert needle not in f.masked

    clean, scanned, skipped = check_paths([clean_dir])
    assert clean == [] and scanned == 8 and skipped == 1


def test_check_command_exit_status_and_masked_table(tmp_path, deid, kr, monkeypatch):
    from nccid.cli.common import console

    monkeypatch.setattr(console, "width", 400)  # titles (the files' paths) kept on one line
    raw_dir, clean_dir, folk = _corpus(tmp_path, deid, kr)
    runner = CliRunner()
    dirty = runner.invoke(_app(), ["deid", "check", str(raw_dir)])
    assert dirty.exit_code == 1
    assert "PatientName" in dirty.output and "finding" in dirty.output
    files = {f.file for f in check_paths([raw_dir])[0]}  # one table per file, titled by it
    titles = [line for line in dirty.output.splitlines() if "possibly identifying" in line]
    assert len(files) > 1 and len(titles) == len(files)
    assert {title.split(": ")[0] for title in titles} == files
    for person in folk:
        assert person.nhs_number not in dirty.output and person.family_name not in dirty.output
    ok = runner.invoke(_app(), ["deid", "check", str(clean_dir)])
    assert ok.exit_code == 0, ok.output
    assert "0 finding(s)" in ok.output
    missing = runner.invoke(_app(), ["deid", "check", str(tmp_path / "nope")])
    assert missing.exit_code != 0


def test_individual_heuristics(person):
    ds = synthetic_instance(person, plant=False)
    checker = Checker()
    assert checker.check_dataset(ds)  # original UIDs, real name, full birth date
    ds.PatientName = "NCCID-ABCDEFGHIJKLMNOP"
    ds.PatientBirthDate = "19800101"
    ds.SOPInstanceUID = ds.StudyInstanceUID = ds.SeriesInstanceUID = "2.25.1"
    ds.FrameOfReferenceUID = ds.file_meta.MediaStorageSOPInstanceUID = "2.25.2"
    ds.PatientID = "NCCID-ABCDEFGHIJKLMNOP"
    del ds.ReferringPhysicianName, ds.AccessionNumber
    assert checker.check_dataset(ds) == []
    ds.ImageComments = "call 020 7946 0000"
    ds.StudyDescription = "seen 12/03/2020"
    ds.AdmittingDiagnosesDescription = "SW1A 1AA"
    reasons = {f.reason for f in checker.check_dataset(ds)}
    assert reasons == {"telephone number", "date in free text", "UK postcode",
                       "attribute de-identification removes"}  # (all three are removed)
    assert mask("9990000018") == "99******** (10 chars)"
