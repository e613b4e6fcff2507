"""A waiting (no clinical record yet) or held (burned-in) image de-identified by an older
release and stored after the upgrade is brought to the current rules when linked or released:
under shift-dates no Timezone Offset From UTC (0008,0201) at any depth and no DT offset
suffix (a held file was shifted already: its suffixes were never stripped), the file meta's
Implementation Class UID nccid's own 2.25 UID, the De-identification Method values as this
release writes them (the old order padded a value to 65 characters). A UID is not keyed
twice, a date not shifted twice. ``nccid deid check`` judges removals against the
installation's profile, so what an older release kept is reported in what is stored."""

from __future__ import annotations

import warnings
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from nccid.identity.keys import SHIFT_BOTH_WAYS
from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.check import Checker, check_paths
from nccid.imaging.deid.engine import IMPLEMENTATION_CLASS_UID
from nccid.synthetic.dicom import synthetic_instance, to_bytes

PSEUDONYM = "NCCID-AAAAAAAAAAAAAAAA"
ZONE = 0x00080201
OLD_IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1403.1"  # a0a47aa's
OLD_METHOD = ["NCCID shift-dates", "PS3.15 E.1-1 2024b+2026c, keyed UIDs",
              "Basic, dates shifted per patient, patient chars, birth year only"]  # 65 padded


def _as_an_older_release_left_it(deid: Deidentifier, person, pseudonym: str | None) -> bytes:
    """A file de-identified as a0a47aa did under shift-dates: offsets and Timezone Offset
    From UTC kept (its option's C performed as K), its meta and markers of then."""
    ds = synthetic_instance(person, plant=False)
    deid.deidentify(ds, pseudonym=pseudonym, placeholder_id="PENDING-1")
    ds.AcquisitionDateTime = f"{ds.StudyDate}101500.123456+0100"
    ds.TimezoneOffsetFromUTC = "+0100"
    frame, content = Dataset(), Dataset()
    content.FrameAcquisitionDateTime = f"{ds.StudyDate}1015-0500"
    content.TimezoneOffsetFromUTC = "-0500"
    frame.FrameContentSequence = [content]
    ds.SharedFunctionalGroupsSequence = [frame]
    ds.file_meta.ImplementationClassUID = OLD_IMPLEMENTATION_CLASS_UID
    ds.DeidentificationMethod = OLD_METHOD
    return to_bytes(ds)


def _read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 65-character LO value warns on every read
        return dcmread(BytesIO(data))


def _assert_current(ds: Dataset, deid: Deidentifier) -> None:
    assert [e for e in ds.iterall() if e.tag == ZONE] == []
    datetimes = [str(e.value) for e in ds.iterall() if e.VR == "DT" and e.value]
    assert datetimes and not any(("+" in v or "-" in v) for v in datetimes)
    assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert list(ds.DeidentificationMethod) == [
        "NCCID shift-dates", deid.spec["description"][:64], "PS3.15 E.1-1 2024b+2026c, keyed UIDs"]


@pytest.mark.parametrize("scheme", ["backward", SHIFT_BOTH_WAYS])
def test_a_waiting_image_is_linked_under_the_current_rules(kr, person, scheme):
    deid = Deidentifier(kr, profile="shift-dates", date_shift=scheme)
    stored = _as_an_older_release_left_it(deid, person, None)
    before = dcmread(BytesIO(stored))
    linked = _read(deid.assign_patient_bytes(stored, PSEUDONYM))
    _assert_current(linked, deid)
    assert linked.SOPInstanceUID == before.SOPInstanceUID  # keyed once, when it arrived
    assert linked.StudyDate != before.StudyDate  # shifted here, the first time
    assert linked.AcquisitionDateTime.startswith(linked.StudyDate)


def test_a_held_image_already_shifted_is_released_under_the_current_rules(kr, person):
    deid = Deidentifier(kr, profile="shift-dates")
    stored = _as_an_older_release_left_it(deid, person, PSEUDONYM)
    before = dcmread(BytesIO(stored))
    released = _read(deid.recheck_bytes(stored))
    _assert_current(released, deid)
    assert released.SOPInstanceUID == before.SOPInstanceUID  # not keyed twice
    assert released.StudyDate == before.StudyDate  # not shifted twice
    assert released.AcquisitionDateTime == f"{before.StudyDate}101500.123456"
    frame = released.SharedFunctionalGroupsSequence[0].FrameContentSequence[0]
    assert frame.FrameAcquisitionDateTime == f"{before.StudyDate}1015"
    assert deid.recheck_bytes(deid.recheck_bytes(stored)) == deid.recheck_bytes(stored)


def test_retain_dates_keeps_real_offsets(kr, person):
    deid = Deidentifier(kr, profile="retain-dates")
    stored = _as_an_older_release_left_it(deid, person, PSEUDONYM)
    released = _read(deid.recheck_bytes(stored))
    assert released.TimezoneOffsetFromUTC == "+0100"  # real dates: their offsets are no secret
    assert released.AcquisitionDateTime.endswith("+0100")
    assert released.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID


def test_the_check_judges_removals_by_the_installations_profile(kr, person, tmp_path):
    deid = Deidentifier(kr, profile="shift-dates")
    (tmp_path / "old.dcm").write_bytes(_as_an_older_release_left_it(deid, person, PSEUDONYM))
    by_profile, _, _ = check_paths([tmp_path], profile="shift-dates")
    assert {(f.tag, f.keyword) for f in by_profile} >= {
        ("(0008,0201)", "TimezoneOffsetFromUTC"),
        ("(5200,9229)[0](0020,9111)[0](0008,0201)", "TimezoneOffsetFromUTC"),
        ("(0008,002A)", "AcquisitionDateTime"),
        ("(5200,9229)[0](0020,9111)[0](0018,9074)", "FrameAcquisitionDateTime")}
    assert not any(f.tag.endswith("(0008,0201)") for f in Checker().check_dataset(
        dcmread(tmp_path / "old.dcm"), "x"))  # retain-dates keeps it: not every profile removes
    (tmp_path / "new.dcm").write_bytes(deid.recheck_bytes((tmp_path / "old.dcm").read_bytes()))
    assert check_paths([tmp_path / "new.dcm"], profile="shift-dates")[0] == []


def test_deid_check_takes_the_installations_profile(kr, person, tmp_path, monkeypatch):
    from nccid.cli.main import typer_app as app
    from nccid.config import reset_settings_cache

    deid = Deidentifier(kr, profile="shift-dates")
    (tmp_path / "old.dcm").write_bytes(_as_an_older_release_left_it(deid, person, PSEUDONYM))
    monkeypatch.setenv("NCCID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NCCID_DEID_PROFILE", "shift-dates")
    reset_settings_cache()
    try:
        runner = CliRunner()
        found = runner.invoke(app, ["deid", "check", str(tmp_path / "old.dcm")])
        assert found.exit_code == 1 and "(0008,0201)" in found.output
        assert "shift-dates profile" in found.output
        anyone = runner.invoke(app, ["deid", "check", "--profile", "any", str(tmp_path / "old.dcm")])
        assert "(0008,0201)" not in anyone.output
    finally:
        reset_settings_cache()
