"""A reader's local copy of an S3 catalogue keeps only the files of the current version and
of the one before (readers mid-query may use those), whatever their age: a file a refresh
deleted from the warehouse leaves the cache when the next version is read."""

from __future__ import annotations

import pytest

from nccid.warehouse.catalogue import _cache_root, catalogue_dir, refresh_catalogue
from nccid.warehouse.service import get_warehouse

pytestmark = [pytest.mark.django_db, pytest.mark.s3,
              pytest.mark.parametrize("backend", ["s3"], indirect=True)]


def _cached() -> set[str]:
    root = _cache_root(get_warehouse())
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def _held() -> set[str]:
    return {k.removeprefix("catalogue/") for k in get_warehouse().list("catalogue")
            if k.endswith(".parquet")}


def test_reading_a_new_version_drops_cached_files_no_longer_held(site, backend, make_image):
    from nccid.warehouse.service import store_image

    versions = []
    for n in range(1, 4):
        store_image(site, *make_image(n))
        refresh_catalogue()
        catalogue_dir()
        versions.append(_cached())
    tables_of_the_first = {f for f in versions[0] if "-v000001." in f}
    assert tables_of_the_first and tables_of_the_first <= versions[1]  # kept while the previous
    assert not tables_of_the_first & versions[2]  # gone, though downloaded seconds ago
    assert versions[2] == _held()  # versions 2 and 3 only
