"""``nccid run`` (the demo, all in one) refreshes the catalogue itself: its refresher finds the
catalogue behind when images were stored or clinical records changed since the last refresh,
refreshes it then (and only then), survives a failed refresh, and its loop runs until
stopped."""

from __future__ import annotations

import threading

import pytest

from nccid.warehouse import refresher as module
from nccid.warehouse.catalogue import catalogue_counts, catalogue_updated_at
from nccid.warehouse.refresher import CatalogueRefresher, catalogue_behind
from nccid.warehouse.service import store_image, uncatalogued_images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_new_images_are_catalogued_at_the_next_pass_and_only_then(site, local_warehouse,
                                                                  make_image):
    refresher = CatalogueRefresher()
    assert catalogue_updated_at() is None and not catalogue_behind()
    assert refresher.refresh_if_behind() is None  # nothing new: no refresh
    assert catalogue_counts()["version"] == 0

    store_image(site, *make_image(1, "DX"))
    assert catalogue_behind()
    assert refresher.refresh_if_behind()["new_images"] == 1
    assert uncatalogued_images() == 0 and catalogue_counts()["images"] == 1
    assert catalogue_updated_at() is not None

    assert not catalogue_behind() and refresher.refresh_if_behind() is None
    assert catalogue_counts()["version"] == 1


def test_a_changed_clinical_record_puts_the_catalogue_behind(site, local_warehouse, make_image):
    from nccid.clinical.models import ClinicalRecord, Upload

    CatalogueRefresher().refresh_if_behind()
    store_image(site, *make_image(2, "DX"))
    CatalogueRefresher().refresh_if_behind()
    assert not catalogue_behind()
    upload = Upload.objects.create(site=site, kind="positive", sha256="2" * 64)
    ClinicalRecord.objects.create(site=site, pseudonym=make_image(3)[0], kind="positive",
                                  cleaned={"age": 70}, digest="d", last_upload=upload)

    assert catalogue_behind()
    assert CatalogueRefresher().refresh_if_behind()["clinical"] == 1


def test_a_failed_refresh_is_logged_and_tried_again(site, local_warehouse, make_image,
                                                    monkeypatch, caplog):
    store_image(site, *make_image(4, "DX"))

    def down(**_):
        raise OSError("the store does not answer")

    with monkeypatch.context() as patch:
        patch.setattr("nccid.warehouse.catalogue.refresh_catalogue", down)
        assert CatalogueRefresher().refresh_if_behind() is None
    assert "catalogue not refreshed (tried again in 60 s): the store does not answer" in caplog.text
    assert CatalogueRefresher().refresh_if_behind()["new_images"] == 1


def test_the_loop_passes_until_stopped(monkeypatch):
    refresher = CatalogueRefresher(every=0)
    passes = []
    third = threading.Event()

    def one_pass():
        passes.append(1)
        if len(passes) == 3:
            third.set()
            refresher.stopped.set()

    monkeypatch.setattr(refresher, "refresh_if_behind", one_pass)
    monkeypatch.setattr(module.connections, "close_all", lambda: None)  # (the test's own)
    refresher.start()
    assert third.wait(timeout=30)
    refresher.stop(timeout=30)
    assert len(passes) == 3 and not refresher.is_alive()
