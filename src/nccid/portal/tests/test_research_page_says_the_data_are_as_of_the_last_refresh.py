"""Research access says the data researchers count, list and export are the catalogue as of
its last refresh: when that was, and how many images and clinical records of their sets
arrived (or changed) since (shown at the next refresh; validation data are never counted for
them). Data just sent were invisible with nothing saying why."""

from __future__ import annotations

import html
import re

import pytest

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _as_of(client) -> str:
    page = html.unescape(client.get("/research/").content.decode())
    found = re.search(r'id="catalogue-as-of">(.*?)</dd>', page, re.S)
    assert found, "the research page says nothing of the catalogue's time"
    return " ".join(found.group(1).split())


def _stored(site, make_image, index: int, set_name: str) -> None:
    from nccid.warehouse.models import ImageRecord
    from nccid.warehouse.service import store_image

    record = store_image(site, *make_image(index, "DX")).record
    ImageRecord.objects.filter(pk=record.pk).update(set_name=set_name)


def test_the_research_page_says_when_the_catalogue_was_refreshed_and_what_came_since(
        client, site, make_user, local_warehouse, make_image):
    from django.utils import dateformat, timezone

    from nccid.warehouse.catalogue import catalogue_updated_at, refresh_catalogue

    client.force_login(make_user("researcher"))
    assert _as_of(client).startswith("No catalogue refresh yet.")

    _stored(site, make_image, 1, "training")
    refresh_catalogue()
    shown = dateformat.format(timezone.localtime(catalogue_updated_at()), "j M Y H:i")
    assert _as_of(client) == (
        f"The last catalogue refresh, {shown}. Counts, lists and exports show the data of that "
        "refresh: data sent since appear at the next one, which the operators schedule (no "
        "image of your sets received since, and no clinical record new or changed).")

    _stored(site, make_image, 2, "training")
    _stored(site, make_image, 3, "training")
    _stored(site, make_image, 4, "validation")
    assert _as_of(client).endswith(
        "(2 images of your sets received since, and no clinical record new or changed).")


@pytest.fixture
def make_image(keyring):
    from nccid.synthetic.dicom import synthetic_instance, to_bytes
    from nccid.synthetic.people import people
    from nccid.warehouse.meta import ImageMeta

    persons = people(10, seed=7)

    def make(index: int, modality: str):
        person = persons[index]
        ds = synthetic_instance(person, modality=modality, rows=16, columns=16, plant=False)
        ds.SOPInstanceUID = keyring.uid(ds.SOPInstanceUID)
        ds.StudyInstanceUID = keyring.uid(ds.StudyInstanceUID)
        ds.SeriesInstanceUID = keyring.uid(ds.SeriesInstanceUID)
        meta = ImageMeta(sop_uid=ds.SOPInstanceUID, study_uid=ds.StudyInstanceUID,
                         series_uid=ds.SeriesInstanceUID, sop_class_uid=ds.SOPClassUID,
                         modality=modality, transfer_syntax=ds.file_meta.TransferSyntaxUID,
                         rows=16, columns=16)
        return keyring.pseudonym(person.nhs_number), to_bytes(ds), meta

    return make


def _record(site, pseudonym: str, set_name: str | None, age: int):
    from nccid.clinical.models import ClinicalRecord, Upload
    from nccid.warehouse.models import PatientSet

    if set_name:
        PatientSet.objects.create(pseudonym=pseudonym, set_name=set_name, site=site)
    upload = Upload.objects.create(site=site, kind="positive", sha256=pseudonym.ljust(64, "0"))
    return ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                         cleaned={"age": age}, digest="d", last_upload=upload)


def test_clinical_records_new_or_changed_since_the_refresh_are_counted_too(
        client, site, make_user, local_warehouse):
    """A sheet of patients without images said 'no image of your sets received since', as if
    nothing were waiting; so did a sheet changing the values filters read (review 25)."""
    from nccid.warehouse.catalogue import refresh_catalogue

    client.force_login(make_user("researcher"))
    kept = _record(site, "p" * 32, "training", 70)
    refresh_catalogue()  # the record read by the refresh is not waiting
    assert _as_of(client).endswith(
        "(no image of your sets received since, and no clinical record new or changed).")

    _record(site, "q" * 32, "training", 60)
    _record(site, "r" * 32, "validation", 50)  # another set: never counted for them
    _record(site, "s" * 32, None, 40)  # no set yet: whose it will be is not known
    assert _as_of(client).endswith(
        "(no image of your sets received since, and 1 clinical record new or changed).")

    kept.cleaned = {"age": 71}  # a follow-up sheet changing a value
    kept.save()
    assert _as_of(client).endswith(
        "(no image of your sets received since, and 2 clinical records new or changed).")
    refresh_catalogue()
    assert _as_of(client).endswith("and no clinical record new or changed).")


def test_while_the_warehouse_does_not_answer_only_the_images_are_counted(
        client, site, make_user, local_warehouse, monkeypatch):
    from nccid.warehouse.storage import StorageError

    def down():
        raise StorageError("the store does not answer")

    monkeypatch.setattr("nccid.warehouse.catalogue.catalogue_updated_at", down)
    client.force_login(make_user("researcher"))
    _record(site, "q" * 32, "training", 60)  # since when is not known: not counted
    assert _as_of(client).startswith("Not known just now: the warehouse does not answer.")
    assert _as_of(client).endswith("(no image of your sets received since).")
