"""A withdrawal removes every object under the patient's folders, whether or not a row names
it: images an intake published before its transaction failed (and could not remove),
header JSON, temporaries a killed write left, in either set and any modality's folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nccid.warehouse import storage
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.storage import TEMP_PREFIX, WRITING_FOLDER
from nccid.withdrawal.models import Withdrawal
from nccid.withdrawal.services import withdraw

from .conftest import keys_but_markers

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

UIDS = "1.2.826.0.1.3680043.10.1/1.2.826.0.1.3680043.10.2/1.2.826.0.1.3680043.10.3"


def _files_naming(root: Path, text: str) -> list[str]:
    """Every file (temporaries too) whose path or bytes name ``text``."""
    return [str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] != "withdrawn"  # its marker
            and (text in str(p) or text.encode() in p.read_bytes())]


def test_objects_and_temporaries_no_row_names_are_removed(patients, manager, backend):
    gone, kept = patients
    orphans = [f"validation/mg/{gone.pseudonym}/{UIDS}.dcm",
               f"validation/mg-metadata/{gone.pseudonym}/{UIDS}.json",
               f"training/ct/{gone.pseudonym}/{UIDS}.dcm"]
    backend.write_many({key: gone.pseudonym.encode() for key in orphans})
    if backend.is_local:  # a write killed before its rename
        temporary = Path(backend.root, "training", "ct", gone.pseudonym, f"{TEMP_PREFIX}99-1")
        temporary.write_bytes(gone.pseudonym.encode())
        # and a writer killed since this process's first write: its journal names the folder
        killed = f"{storage._HOST}-99-{'0d' * 6}"
        Path(backend.root, WRITING_FOLDER).mkdir(exist_ok=True)
        Path(backend.root, WRITING_FOLDER, killed).write_text(f"training/ct/{gone.pseudonym}\n")
    assert not ImageRecord.objects.filter(storage_key__in=orphans).exists()

    removed = withdraw(manager, gone.pseudonym, "Consent withdrawn", refresh=False)

    assert [k for k in keys_but_markers(backend) if gone.pseudonym in k] == []
    if backend.is_local:
        assert _files_naming(Path(backend.root), gone.pseudonym) == []
        assert not os.path.exists(Path(backend.root, "training", "ct", gone.pseudonym))
    assert removed.objects == 3 + 6  # the orphans; the images and headers the rows named
    assert Withdrawal.objects.get().completed_at is not None
    for record in ImageRecord.objects.filter(pseudonym=kept.pseudonym):
        assert backend.exists(record.storage_key) and backend.exists(record.metadata_key)
