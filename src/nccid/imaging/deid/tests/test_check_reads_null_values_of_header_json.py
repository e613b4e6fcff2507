"""A header JSON holds null for an empty value of a multi-valued element (PS3.18 F.2.5, as the
warehouse writes it): the checker read it as the text "None" and reported a clean image's
Window Center as "DS value not of its form", so `deid check --warehouse` failed."""

from __future__ import annotations

import json
from io import BytesIO

from pydicom import dcmread

from nccid.imaging.deid.check import Checker
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.dicom_json import header_json


def test_null_values_are_empty_values_as_in_the_file():
    ds = synthetic_instance(people(1, seed=5)[0], plant=False)
    ds.WindowCenter = ["40", ""]
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    read = dcmread(BytesIO(to_bytes(ds)))
    header = header_json(dataset=read)
    body = json.loads(header)
    assert body["00281050"]["Value"] == [40.0, None] and None in body["00080008"]["Value"]
    in_file = {(f.tag, f.reason) for f in Checker().check_dataset(read, "x.dcm")}
    in_header = {(f.tag, f.reason) for f in Checker().check_header(header, "x.json")}
    assert not any(tag in ("(0028,1050)", "(0008,0008)") for tag, _ in in_file | in_header)
