"""On S3, readers mirror the catalogue's Parquet into NCCID_HOME/cache/catalogue. A withdrawal
leaves no cached file naming the patient on the host that ran it, however recently the file
was downloaded."""

from __future__ import annotations

import pytest

from nccid.warehouse.catalogue import _cache_root, connect_catalogue, refresh_catalogue
from nccid.warehouse.service import get_warehouse
from nccid.withdrawal.services import withdraw

pytestmark = [pytest.mark.django_db(databases=["default", "vault"]), pytest.mark.s3,
              pytest.mark.parametrize("backend", ["s3"], indirect=True)]


def _cached_files_naming(text: str) -> list[str]:
    root = _cache_root(get_warehouse())  # this warehouse's (other tests' buckets have their own)
    return [str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and text.encode() in p.read_bytes()]


def _clinical_rows() -> int:
    con = connect_catalogue(read_only=True)
    try:
        return con.execute("SELECT count(*) FROM clinical").fetchone()[0]
    finally:
        con.close()


def test_no_cached_catalogue_file_names_the_withdrawn_patient(patients, manager, backend):
    gone, kept = patients
    refresh_catalogue()
    assert _clinical_rows() == 2  # read: mirrored into the cache
    assert _cached_files_naming(gone.pseudonym)

    withdraw(manager, gone.pseudonym, "Consent withdrawn")

    assert _cached_files_naming(gone.pseudonym) == []  # before any later read
    assert _clinical_rows() == 1
    assert _cached_files_naming(gone.pseudonym) == []
    assert _cached_files_naming(kept.pseudonym)
