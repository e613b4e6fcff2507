"""One number JSON cannot hold deep inside a sequence (a Diffusion b-value of NaN in one frame
of an enhanced MR's Per-Frame Functional Groups, an FD of Infinity in its Shared Functional
Groups) is left out where it is, never more: the sequence, its other items and the item's other
elements stay in the header JSON (they dropped the whole top-level sequence, every frame's
geometry with it). A multi-valued number keeps its other values, the bad one null at its
position. Each is logged by tag path only, by both de-identification paths alike."""

from __future__ import annotations

import json
import logging

from pydicom.dataset import Dataset

from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.dicom_json import header_json

PER_FRAME, SHARED = "52009230", "52009229"
DIFFUSION, B_VALUE, MEASURES = "00189117", "00189087", "00289110"
ORIENTATION, SPACING = "00209116", "00280030"


def _enhanced_mr() -> Dataset:
    ds = synthetic_instance(people(3, seed=7)[1], modality="MR", plant=False)
    frames = []
    for index in range(3):
        frame, measures, diffusion = Dataset(), Dataset(), Dataset()
        measures.PixelSpacing = [0.5, 0.5]
        measures.SliceThickness = 1.0
        diffusion.DiffusionBValue = float("nan") if index == 1 else 1000.0  # FD
        frame.PixelMeasuresSequence = [measures]
        frame.MRDiffusionSequence = [diffusion]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    shared, orientation, diffusion = Dataset(), Dataset(), Dataset()
    diffusion.DiffusionBValue = float("inf")
    diffusion.DiffusionGradientOrientation = [0.0, float("inf"), 1.0]  # FD, VM 3
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.MRDiffusionSequence = [diffusion]
    shared.PlaneOrientationSequence = [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    return ds


def _strict(data: bytes) -> dict:
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(data, parse_constant=refuse)


def test_only_the_number_that_is_not_finite_is_left_out(caplog):
    engine = Deidentifier(Keyring(bytes(range(32))), profile="retain-dates")
    data = to_bytes(_enhanced_mr())
    with caplog.at_level(logging.WARNING, logger="nccid.warehouse"):
        _, result = engine.deidentify_parts(data, pseudonym="NCCID-AAAAAAAAAAAAAAAA")
        body = _strict(header_json(dataset=result.dataset))
    frames = body[PER_FRAME]["Value"]
    assert len(frames) == 3  # every frame's geometry is there
    for index, frame in enumerate(frames):
        assert frame[MEASURES]["Value"][0][SPACING] == {"vr": "DS", "Value": [0.5, 0.5]}
        diffusion = frame[DIFFUSION]["Value"][0]
        if index == 1:
            assert B_VALUE not in diffusion  # the NaN alone
        else:
            assert diffusion[B_VALUE] == {"vr": "FD", "Value": [1000.0]}
    shared = body[SHARED]["Value"][0]
    assert shared["00209116"]["Value"][0]["00200037"]["Value"] == [1, 0, 0, 0, 1, 0]
    diffusion = shared[DIFFUSION]["Value"][0]
    assert B_VALUE not in diffusion
    assert diffusion["00189089"] == {"vr": "FD", "Value": [0.0, None, 1.0]}
    logged = caplog.text
    assert "(5200,9230)[1](0018,9117)[0](0018,9087)" in logged
    assert "(5200,9229)[0](0018,9117)[0](0018,9087)" in logged
    assert "(5200,9229)[0](0018,9117)[0](0018,9089)" in logged
    assert "nan" not in logged.lower() and "inf" not in logged.lower()


def test_the_element_by_element_path_writes_the_same():
    engine = Deidentifier(Keyring(bytes(range(32))), profile="retain-dates")
    data = to_bytes(_enhanced_mr())
    _, result = engine.deidentify_parts(data, pseudonym="NCCID-AAAAAAAAAAAAAAAA",
                                        header=parse_header(data))
    expected = _strict(header_json(dataset=result.dataset))
    for _ in range(2):  # the first time, then from the memo
        made = deidentify_by_element(engine, data, parse_header(data), "NCCID-AAAAAAAAAAAAAAAA")
        assert made is not None and _strict(made[3]) == expected
    assert len(expected[PER_FRAME]["Value"]) == 3
