"""Under ``shift-dates`` no UTC offset is kept: not Timezone Offset From UTC (0008,0201), not a
DT's ``+hhmm`` suffix, at any depth, in the file or its header JSON, element by element as by
the engine. Kept, a shifted January date marked +0100 said its real date was in summer, and a
patient's two studies either side of a UK clock change pinned their secret offset to a few
candidates (and with it every real date). Under ``retain-dates`` real dates keep their offsets."""

from __future__ import annotations

import json
from datetime import date, timedelta
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from nccid.identity.keys import SHIFT_BOTH_WAYS
from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.dicom_json import header_json

CLOCK_CHANGE = date(2020, 10, 25)  # UK clocks went back: +0100 before, +0000 after
STUDIES = [(10, CLOCK_CHANGE - timedelta(days=2), "+0100"),
           (11, CLOCK_CHANGE + timedelta(days=2), "+0000")]
ZONE_TAG = 0x00080201


def _study(person, study: int, day: date, zone: str) -> bytes:
    ds = synthetic_instance(person, study=study, study_date=day, plant=False)
    ds.AcquisitionDateTime = f"{day:%Y%m%d}101500.000000{zone}"
    ds.TimezoneOffsetFromUTC = zone
    frame, content = Dataset(), Dataset()  # an enhanced image's frame: two levels down
    content.FrameAcquisitionDateTime = f"{day:%Y%m%d}1015{zone}"
    content.TimezoneOffsetFromUTC = zone
    frame.FrameContentSequence = [content]
    ds.PerFrameFunctionalGroupsSequence = [frame]
    return to_bytes(ds)


def _outputs(deid: Deidentifier, data: bytes, pseudonym: str):
    """(file, header JSON) by the engine, checked equal to those made element by element."""
    parts, result = deid.deidentify_parts(data, pseudonym=pseudonym, header=parse_header(data))
    made = deidentify_by_element(deid, data, parse_header(data), pseudonym)
    assert made is not None  # the memo's way was taken, and agrees
    assert b"".join(made[0]) == b"".join(parts)
    assert json.loads(made[3]) == json.loads(header_json(dataset=result.dataset))
    return dcmread(BytesIO(b"".join(parts))), made[3].decode()


def _frame_time(ds: Dataset) -> str:
    return ds.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0].FrameAcquisitionDateTime


def _zones(ds: Dataset) -> list[str]:
    return [str(e.value) for e in ds.iterall() if e.tag == ZONE_TAG]


@pytest.mark.parametrize("scheme", ["backward", SHIFT_BOTH_WAYS])
def test_a_study_either_side_of_a_clock_change_shows_no_utc_offset(kr, person, scheme):
    deid = Deidentifier(kr, "shift-dates", date_shift=scheme)
    pseudonym = kr.pseudonym(person.nhs_number)
    moved = timedelta(days=kr.date_shift_days(pseudonym, scheme=scheme))
    for study, day, zone in STUDIES:
        for _ in range(2):  # the second time from the memo
            ds, header = _outputs(deid, _study(person, study, day, zone), pseudonym)
            assert _zones(ds) == []
            assert ds.StudyDate == f"{day + moved:%Y%m%d}"
            assert ds.AcquisitionDateTime == f"{day + moved:%Y%m%d}101500.000000"
            assert _frame_time(ds) == f"{day + moved:%Y%m%d}1015"
            assert "00080201" not in header and zone not in header


def test_retain_dates_keeps_the_real_dates_utc_offsets(kr, person):
    deid = Deidentifier(kr, "retain-dates")
    for study, day, zone in STUDIES:
        ds, header = _outputs(deid, _study(person, study, day, zone), "NCCID-A")
        assert _zones(ds) == [zone, zone]
        assert ds.AcquisitionDateTime == f"{day:%Y%m%d}101500.000000{zone}"
        assert _frame_time(ds) == f"{day:%Y%m%d}1015{zone}"
        assert "00080201" in header
