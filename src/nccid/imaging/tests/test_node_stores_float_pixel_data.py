"""Float and Double Float Pixel Data sent to the node are stored, not refused after the
sender was told success: the node's worker de-identifies them as the import does."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import get_warehouse

from .test_valid_files_once_refused_are_stored import FLOATS, PARAMETRIC_MAP, float_instance

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


def test_float_pixel_data_sent_to_the_node_is_stored(node, site, keyring, person_factory):
    datasets = [float_instance(person_factory(87), keyword, syntax)
                for keyword in FLOATS for syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian)]
    for number, ds in enumerate(datasets):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{ds.SOPInstanceUID}.{number}"
    ae = AE(ae_title="RTEST_PACS")
    ae.add_requested_context(PARAMETRIC_MAP, [ImplicitVRLittleEndian])
    ae.add_requested_context(PARAMETRIC_MAP, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="NCCID")
    assert assoc.is_established
    assert [assoc.send_c_store(ds).Status for ds in datasets] == [0, 0, 0, 0]
    assoc.release()
    node.drained()
    for ds in datasets:
        record = ImageRecord.objects.get(sop_uid=keyring.uid(ds.SOPInstanceUID))
        stored = dcmread(BytesIO(get_warehouse().read(record.storage_key)))
        keyword = "FloatPixelData" if "FloatPixelData" in ds else "DoubleFloatPixelData"
        assert stored[keyword].value == ds[keyword].value
        assert stored.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
