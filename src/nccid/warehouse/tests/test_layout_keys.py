"""Warehouse keys follow the national database's bucket layout, for every modality."""

from __future__ import annotations

import pytest

from nccid.warehouse.layout import (
    LayoutError,
    clinical_key,
    image_key,
    metadata_key,
    modality_folder,
)

P = "NCCID-ABCDEFGHIJKLMNOP"


@pytest.mark.parametrize(("modality", "folder"), [
    ("DX", "xray"), ("CR", "xray"), ("CT", "ct"), ("MR", "mri"),
    ("dx", "xray"), (" CT ", "ct"),
    ("US", "us"), ("PT", "pt"), ("NM", "nm"), ("OT", "ot"), ("SR", "sr"), ("MG", "mg"),
    ("XA", "xa"), ("RF", "rf"), ("KO", "ko"), ("PR", "pr"), ("SEG", "seg"),
    ("", "other"), (None, "other"), ("   ", "other"), ("?!", "other"),
    ("DATA", "modality_data"),  # never the clinical records' folder
    ("A B", "a_b"),
])
def test_modality_folder(modality, folder):
    assert modality_folder(modality) == folder


def test_image_and_metadata_keys():
    args = ("training", "DX", P, "2.25.1", "2.25.2", "2.25.3")
    assert image_key(*args) == f"training/xray/{P}/2.25.1/2.25.2/2.25.3.dcm"
    assert metadata_key(*args) == f"training/xray-metadata/{P}/2.25.1/2.25.2/2.25.3.json"
    assert image_key("validation", "MR", P, "1.2", "1.2.3", "1.2.3.4") == \
        f"validation/mri/{P}/1.2/1.2.3/1.2.3.4.dcm"
    assert image_key("validation", "US", P, "1.2", "1.2.3", "1.2.3.4") == \
        f"validation/us/{P}/1.2/1.2.3/1.2.3.4.dcm"
    assert metadata_key("training", "", P, "1", "1.1", "1.1.1") == \
        f"training/other-metadata/{P}/1/1.1/1.1.1.json"


def test_clinical_key():
    assert clinical_key("training", P, "positive", "RTEST") == f"training/data/{P}/positive-RTEST.json"
    assert clinical_key("validation", P, "isaric", "R0A") == f"validation/data/{P}/isaric-R0A.json"


@pytest.mark.parametrize(("args", "what"), [
    (("testing", "DX", P, "1", "1.1", "1.1.1"), "set"),
    (("training", "DX", "../etc", "1", "1.1", "1.1.1"), "pseudonym"),
    (("training", "DX", "", "1", "1.1", "1.1.1"), "pseudonym"),
    (("training", "DX", P, "1/../..", "1.1", "1.1.1"), "Study Instance UID"),
    (("training", "DX", P, "1", "1.a", "1.1.1"), "Series Instance UID"),
    (("training", "DX", P, "1", "1.1", "1." + "1" * 70), "SOP Instance UID"),
])
def test_malformed_components_are_refused_by_name(args, what):
    with pytest.raises(LayoutError, match=what):
        image_key(*args)


def test_clinical_key_refuses_bad_kind_and_site():
    with pytest.raises(LayoutError, match="record kind"):
        clinical_key("training", P, "pos/../x", "RTEST")
    with pytest.raises(LayoutError, match="site code"):
        clinical_key("training", P, "positive", "")
