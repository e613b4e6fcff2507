"""A presentation context proposing several transfer syntaxes gets the first the node takes in
the sender's order (dcmtk's storescp rule). pynetdicom's own rule, the first in the acceptor's
list, accepted Implicit VR Little Endian for [JPEG Lossless, Explicit VR, Implicit VR], so
dcmsend decompressed a JPEG Lossless file before sending it and the node stored it at three
times its size: compressed images are to be stored as received."""

from __future__ import annotations

import os
import subprocess

import pytest
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from nccid.imaging.dcmtk import dcmtk_tool
from nccid.warehouse.models import ImageRecord

from .conftest import original_sop, write_study

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "vault"])


def test_each_context_gets_the_first_syntax_its_sender_proposed(node, site):
    ae = AE(ae_title="RTEST_PACS")
    proposals = [[JPEGLosslessSV1, ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                 [JPEG2000Lossless, JPEGLosslessSV1, RLELossless, ExplicitVRLittleEndian],
                 [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                 [ImplicitVRLittleEndian, ExplicitVRLittleEndian]]
    for syntaxes in proposals:
        ae.add_requested_context(CTImageStorage, syntaxes)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="NCCID")
    try:
        assert assoc.is_established
        accepted = {cx.context_id: cx.transfer_syntax[0] for cx in assoc.accepted_contexts}
    finally:
        assoc.release()
    assert [accepted[cx_id] for cx_id in (1, 3, 5, 7)] == [p[0] for p in proposals]


@pytest.mark.dcmtk
def test_dcmsend_sends_a_jpeg_lossless_file_as_it_is_and_it_is_stored_so(
        node, site, keyring, tmp_path, person_factory):
    person = person_factory(31)
    plain = write_study(tmp_path / "plain", person, count=1, patient_id=person.nhs_number,
                        rows=64)[0]
    compressed = tmp_path / "sent" / "jpeg-lossless.dcm"
    compressed.parent.mkdir()
    subprocess.run([dcmtk_tool("dcmcjpeg"), "--encode-lossless-sv1", str(plain), str(compressed)],
                   check=True, capture_output=True, timeout=60)
    result = subprocess.run(
        [dcmtk_tool("dcmsend"), "-v", "-aet", "RTEST_PACS", "-aec", "NCCID", "127.0.0.1",
         str(node.port), str(compressed)],
        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Converting transfer syntax" not in result.stdout + result.stderr
    node.drained()
    record = ImageRecord.objects.get(sop_uid=keyring.uid(original_sop(compressed)))
    assert record.transfer_syntax == JPEGLosslessSV1
