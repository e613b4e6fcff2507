"""A C-STORE the node refuses is answered with why, in its Error Comment (0000,0902): the
sender's log shows it, not only the node's. Only the node's own words go back, never a value
read from the file, and never more than an LO holds (64 characters)."""

from __future__ import annotations

import ast
import inspect
import logging
import subprocess
from types import SimpleNamespace

import pytest
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from nccid.imaging import intake
from nccid.imaging.dcmtk import dcmtk_tool
from nccid.imaging.fastpath import store_response_pdu
from nccid.imaging.node import (
    _TOLD_WITHOUT_NUMBERS,
    ERROR_COMMENT_CHARS,
    NODE_STOPPING,
    NOT_SPOOLED,
    OUT_OF_RESOURCES,
    _log_summary,
    _QuickDUL,
    error_comment,
    store_instance,
)
from nccid.imaging.spool import Spool

from .conftest import to_bytes, write_study

on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])

SHORT_PIXELS = "pixel data too short for the image's size (truncated?)"
NO_STUDY_UID = "incomplete DICOM: no StudyInstanceUID (truncated file?)"


def _refused(tmp_path, person):
    """A file whose pixel data is cut (100 of 2,048 bytes) and one without its study UID."""
    files = write_study(tmp_path, person, count=2, patient_id=person.nhs_number)
    short = dcmread(files[0])
    short.PixelData = short.PixelData[:100]  # 32 x 32 x 16 bits declared
    no_uid = dcmread(files[1])
    del no_uid.StudyInstanceUID
    return short, no_uid


@on_a_node
@pytest.mark.parametrize("short_path", [True, False])
def test_a_refused_instance_s_answer_says_why(node, site, tmp_path, person_factory, monkeypatch,
                                              short_path):
    if not short_path:  # pynetdicom's own path (handle_store) answers the same
        monkeypatch.setattr(_QuickDUL, "_fast_path", lambda self: None)
    short, no_uid = _refused(tmp_path, person_factory(61))
    ae = AE(ae_title="RTEST_PACS")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", node.port, ae_title="NCCID")
    assert assoc.is_established
    answers = [assoc.send_c_store(ds) for ds in (short, no_uid)]
    assoc.release()
    assert [a.Status for a in answers] == [0xC000, 0xC000]
    assert [a.ErrorComment for a in answers] == [SHORT_PIXELS, NO_STUDY_UID]
    assert "100" not in answers[0].ErrorComment and "2048" not in answers[0].ErrorComment


@on_a_node
@pytest.mark.dcmtk
def test_dcmtk_s_storescu_shows_the_reason(node, site, tmp_path, person_factory):
    short, _ = _refused(tmp_path, person_factory(62))
    path = tmp_path / "short.dcm"
    path.write_bytes(to_bytes(short))
    result = subprocess.run([dcmtk_tool("storescu"), "-d", "-aet", "RTEST_PACS", "-aec", "NCCID",
                             "127.0.0.1", str(node.port), str(path)],
                            capture_output=True, text=True, timeout=60)
    assert f"LO [{SHORT_PIXELS}]" in result.stdout + result.stderr  # its ErrorComment line


@pytest.mark.parametrize("comment", [SHORT_PIXELS, NOT_SPOOLED])  # even and odd lengths
def test_the_short_path_s_answer_with_a_comment_is_the_pdu_pynetdicom_would_send(comment):
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 7
    response.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    response.AffectedSOPInstanceUID = "2.25.1"
    response.Status = 0xC000
    response.ErrorComment = comment
    message = C_STORE_RSP()
    message.primitive_to_message(response)
    expected = [P_DATA_TF(p).encode() for p in message.encode_msg(3, 16384)]
    assert [store_response_pdu(3, 7, "1.2.840.10008.5.1.4.1.1.2", "2.25.1", 0xC000,
                               comment)] == expected


@pytest.mark.parametrize(("reason", "told"), [
    (intake.NOT_DICOM, "not a DICOM file (no 'DICM' marker at byte 128, and no DICOM..."),
    ("truncated: the file ends inside an element (its header or value is cut)",
     "truncated: the file ends inside an element"),
    ("a DICOM dataset without file meta whose pixel data is compressed: its transfer syntax "
     "cannot be known (send it with its file meta)",
     "a DICOM dataset without file meta whose pixel data is compressed"),
    ("incomplete DICOM: no SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID "
     "(truncated file?)", "incomplete DICOM: no SOPClassUID, SOPInstanceUID..."),
    (NO_STUDY_UID, NO_STUDY_UID),
    ("pixel data too short: 8192 of 10240 bytes (truncated?)", SHORT_PIXELS),
    ("truncated: the pixel data declares 9434765919 bytes, 100 present",
     "truncated: the file ends inside its pixel data"),
])
def test_a_reason_is_told_within_an_lo_and_without_the_file_s_numbers(reason, told):
    assert error_comment(reason) == told
    assert len(told) <= ERROR_COMMENT_CHARS


def _formatted(node_: ast.expr) -> list[str]:
    """The source of each value an f-string or ``.format`` puts into a reason."""
    if isinstance(node_, ast.JoinedStr):
        return [ast.unparse(v.value) for v in node_.values if isinstance(v, ast.FormattedValue)]
    if isinstance(node_, ast.Call) and getattr(node_.func, "attr", "") == "format":
        return [ast.unparse(arg) for arg in node_.args]
    return []


# What intake's reasons may put into their words: its limits, element keywords (the literal
# each ``header_value`` call gives, below) and exception types. Nothing read from a file.
_NOT_FROM_THE_FILE = {"limit", "MAX_SEQUENCE_DEPTH", "MAX_HEADER_ELEMENTS", "keyword",
                      "type(exc).__name__", "', '.join(missing)"}


def test_no_reason_a_sender_is_told_quotes_a_value_from_the_file():
    """Every ``Rejected`` intake raises: the node's structural check gives its message to
    the sender (``error_comment``) unless it is one the node tells in fixed words."""
    tree = ast.parse(inspect.getsource(intake))
    told_otherwise = tuple(_TOLD_WITHOUT_NUMBERS)
    seen = 0
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for call in ast.walk(function):
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Rejected"):
                continue
            seen += 1
            (arg,) = call.args
            if function.name == "_deidentify":  # de-identification's: never on the node's check
                continue
            if isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant) and \
                    str(arg.values[0].value).startswith(told_otherwise):
                continue
            assert isinstance(arg, (ast.Constant, ast.Name, ast.JoinedStr, ast.Call)), \
                ast.unparse(call)
            assert set(_formatted(arg)) <= _NOT_FROM_THE_FILE, ast.unparse(call)
    assert seen > 20
    keywords = [call.args[1] for call in ast.walk(tree) if isinstance(call, ast.Call)
                and getattr(call.func, "id", "") == "header_value"]
    assert keywords and all(isinstance(k, ast.Constant) for k in keywords)


def test_an_instance_arriving_as_the_node_stops_is_no_disk_failure(tmp_path, keyring, caplog):
    spool = Spool(tmp_path / "spool", keyring)
    spool.close()  # what shutdown() does once the drain stopped, associations still open
    assoc = SimpleNamespace(_nccid_site_code="RTEST")
    with caplog.at_level(logging.INFO, logger="nccid"):
        answer = store_instance(assoc, lambda: b"head", [memoryview(b"body")], spool)
    _log_summary(assoc)
    assert answer == (OUT_OF_RESOURCES, NODE_STOPPING)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert ("site RTEST: an instance arrived as the node stopped: not kept, the sender should "
            "send it again") in caplog.text
