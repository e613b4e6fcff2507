"""A catalogue refresh that dies after claiming its rows (killed, a full disk, S3 refusing the
write) leaves something the next refresh finishes, the first refresh of a warehouse included:
the claimed rows are catalogued exactly once, and no reader takes the warehouse for an
unmounted one. A warehouse that lost a catalogue it had is still refused."""

from __future__ import annotations

import pytest

from nccid.warehouse import catalogue
from nccid.warehouse.catalogue import STATE_KEY, connect_catalogue, refresh_catalogue
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import StorageError, get_warehouse, store_image, verify_objects


class Killed(Exception):
    """Stands for the process dying (SIGKILL) once a refresh has claimed its rows."""


def _die_writing_the_first_part(monkeypatch) -> None:
    def die(warehouse, part, shift):
        assert ImageRecord.objects.filter(catalogue_part=part).exists()  # claimed already
        raise Killed

    monkeypatch.setattr(catalogue, "_write_image_part", die)


def _store(site, make_image, people: range) -> None:
    for index in people:
        store_image(site, *make_image(index, "DX", instance=index + 1))


def _catalogued_sop_uids() -> list[str]:
    return [row[0] for row in connect_catalogue().execute(
        "SELECT sop_uid FROM images ORDER BY sop_uid").fetchall()]


def test_a_first_refresh_killed_after_its_claim_is_finished_by_the_next(
        site, local_warehouse, make_image, monkeypatch):
    _store(site, make_image, range(3))
    with monkeypatch.context() as patch:
        _die_writing_the_first_part(patch)
        with pytest.raises(Killed):
            refresh_catalogue()
    assert ImageRecord.objects.exclude(catalogue_part=None).count() == 3

    assert connect_catalogue().execute("SELECT count(*) FROM images").fetchone() == (0,)
    result = refresh_catalogue()
    assert (result["images"], result["version"]) == (3, 1)
    everything = sorted(ImageRecord.objects.values_list("sop_uid", flat=True))
    assert _catalogued_sop_uids() == everything  # each row once
    assert verify_objects(None).ok


def test_a_later_refresh_killed_after_its_claim_is_finished_by_the_next(
        site, local_warehouse, make_image, monkeypatch):
    _store(site, make_image, range(2))
    refresh_catalogue()
    _store(site, make_image, range(2, 4))
    with monkeypatch.context() as patch:
        _die_writing_the_first_part(patch)
        with pytest.raises(Killed):
            refresh_catalogue()
    assert len(_catalogued_sop_uids()) == 2  # the version before the killed refresh

    result = refresh_catalogue()
    assert (result["images"], result["version"]) == (4, 2)
    assert _catalogued_sop_uids() == sorted(ImageRecord.objects.values_list("sop_uid", flat=True))


def test_a_catalogue_that_vanished_after_a_refresh_is_still_refused(
        site, local_warehouse, make_image):
    _store(site, make_image, range(2))
    refresh_catalogue()
    get_warehouse().delete(STATE_KEY)  # as an unmounted folder shows it
    with pytest.raises(StorageError, match="has no catalogue although 2 images are catalogued"):
        refresh_catalogue()
