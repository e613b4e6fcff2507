"""Header JSON an older release stored with ``Infinity`` or ``NaN`` (a Slice Thickness of 1e400,
a NaN in one of several values, deep in a sequence) is exported as strict JSON, those numbers
left out as the writer now leaves them; a header without them is copied byte for byte."""

from __future__ import annotations

import json

from nccid.research.cohort import CohortFilter
from nccid.research.export import export_cohort, metadata_key, read_manifest

from .world import build_world


def _strict(data: bytes) -> dict:
    def refuse(token: str):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(data, parse_constant=refuse)


def test_an_old_header_with_infinity_is_exported_strict(researcher, tmp_path):
    small = build_world(tmp_path / "w", n_people=2)
    training = [i for i in small.images if i["set_name"] == "training"]
    old, kept = (small.warehouse.root / metadata_key(i["storage_key"], i["folder"])
                 for i in training[:2])
    body = json.loads(old.read_bytes())
    body["00180050"] = {"vr": "DS", "Value": [float("inf")]}
    body["00280030"] = {"vr": "DS", "Value": [0.5, float("nan")]}
    body["52009230"] = {"vr": "SQ", "Value": [{"00180050": {"vr": "DS", "Value": [float("-inf")]},
                                               "00180088": {"vr": "DS", "Value": [1.5]}}]}
    old.write_text(json.dumps(body))  # as the writer before strict JSON wrote them
    assert b"Infinity" in old.read_bytes()

    out = tmp_path / "export"
    export_cohort(researcher, CohortFilter(), out, source=small.source())
    exported = _strict((out / old.relative_to(small.warehouse.root)).read_bytes())
    assert "00180050" not in exported
    assert exported["00280030"]["Value"] == [0.5, None]
    assert exported["52009230"]["Value"] == [{"00180088": {"vr": "DS", "Value": [1.5]}}]
    assert {k: v for k, v in exported.items() if k not in ("00180050", "00280030", "52009230")} \
        == {k: v for k, v in body.items() if k not in ("00180050", "00280030", "52009230")}
    key = kept.relative_to(small.warehouse.root).as_posix()
    assert (out / key).read_bytes() == kept.read_bytes()
    assert key in read_manifest(out)
