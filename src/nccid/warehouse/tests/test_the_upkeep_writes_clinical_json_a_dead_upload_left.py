"""Records committed by an upload whose writer never ran (a worker killed right after the
commit, or the store down) get their JSON, and their patients' stored images their link, from
the regular upkeep: every catalogue refresh and ``nccid run``'s refresher between refreshes.
Found by one query (``ClinicalRecord.json_owed``), written once, never for a withdrawn patient."""

from __future__ import annotations

import json

import pytest

from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord
from nccid.clinical.signals import AcceptedRecord
from nccid.clinical.tests.helpers import sheet_of
from nccid.synthetic.people import people
from nccid.warehouse import layout
from nccid.warehouse import refresher as refresher_module
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.warehouse.refresher import CatalogueRefresher
from nccid.warehouse.service import (
    clinical_records_without_json,
    store_image,
    write_clinical_records,
    write_owed_clinical_json,
)
from nccid.withdrawal.models import Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PERSONS = people(50, seed=7)  # those of ``make_image``


def _confirm_and_die(site, make_user, django_capture_on_commit_callbacks, rows: list[dict]):
    """Confirm a sheet of the first ``len(rows)`` persons; the process dies after the commit,
    before the post-commit receivers (JSON writer, image linker) run."""
    user = make_user("uploader", site=site)
    preview = services.preview_upload(site, "positive", "a.xlsx",
                                      sheet_of("positive", rows, PERSONS), user)
    with django_capture_on_commit_callbacks(execute=False) as receivers:
        services.confirm_upload(preview, user)
    assert len(receivers) == 1  # (records_accepted: never sent)


def _json(warehouse, record: ClinicalRecord) -> dict:
    set_name = PatientSet.objects.get(pseudonym=record.pseudonym).set_name
    return json.loads(warehouse.read(layout.clinical_key(set_name, record.pseudonym, record.kind,
                                                         record.site.code)))


def _writes(monkeypatch) -> list[str]:
    """The clinical JSON keys written from now on, in order."""
    from nccid.warehouse.storage import Warehouse

    keys: list[str] = []
    real = Warehouse.write_many

    def counting(self, objects, *args, **kwargs):
        keys.extend(key for key in objects if "/data/" in key)
        return real(self, objects, *args, **kwargs)

    monkeypatch.setattr(Warehouse, "write_many", counting)
    return keys


def test_a_refresh_writes_what_a_killed_confirmation_left_and_links_the_images(
        site, local_warehouse, make_image, make_user, monkeypatch, django_capture_on_commit_callbacks):
    image = store_image(site, *make_image(0, "DX"), linked=False).record  # sent before the sheet
    _confirm_and_die(site, make_user, django_capture_on_commit_callbacks,
                     [{"age": 50, "sex": 1}, {"age": 60, "sex": 2}])
    assert clinical_records_without_json() == 2
    writes = _writes(monkeypatch)

    assert CatalogueRefresher(every=0).refresh_if_behind()  # nccid run's pass: a refresh

    records = list(ClinicalRecord.objects.order_by("pk"))
    assert clinical_records_without_json() == 0
    assert [_json(local_warehouse, r) for r in records] == [r.cleaned for r in records]
    assert sorted(writes) == sorted({*writes}) and len(writes) == 2  # each once
    assert ImageRecord.objects.get(pk=image.pk).linked
    assert write_owed_clinical_json() == 0 and len(writes) == 2  # nothing owed is left


def test_refresher_writes_them_when_nothing_else_is_new(
        site, local_warehouse, make_user, monkeypatch, django_capture_on_commit_callbacks):
    _confirm_and_die(site, make_user, django_capture_on_commit_callbacks, [{"age": 50, "sex": 1}])
    monkeypatch.setattr(refresher_module, "catalogue_behind", lambda: False)
    assert CatalogueRefresher(every=0).refresh_if_behind() is None  # no refresh: the upkeep only
    assert clinical_records_without_json() == 0


def test_a_confirmation_whose_writer_ran_owes_nothing(
        site, local_warehouse, make_user, monkeypatch, django_capture_on_commit_callbacks):
    user = make_user("uploader", site=site)
    preview = services.preview_upload(site, "positive", "a.xlsx",
                                      sheet_of("positive", [{"age": 50, "sex": 1}], PERSONS), user)
    with django_capture_on_commit_callbacks(execute=True):
        services.confirm_upload(preview, user)
    assert not ClinicalRecord.objects.filter(json_owed=True).exists()
    assert write_owed_clinical_json() == 0  # the upkeep rewrites nothing


def test_a_writer_of_older_content_leaves_the_record_owed(site, local_warehouse, make_user,
                                                           django_capture_on_commit_callbacks):
    """Two uploads of one record: the first's late writer must not mark the second's JSON
    written (its own, older, content may be what the store now holds)."""
    _confirm_and_die(site, make_user, django_capture_on_commit_callbacks, [{"age": 50, "sex": 1}])
    record = ClinicalRecord.objects.get()
    first = AcceptedRecord(record.pseudonym, None, "positive", dict(record.cleaned), record.digest)
    _confirm_and_die(site, make_user, django_capture_on_commit_callbacks, [{"age": 51, "sex": 1}])
    write_clinical_records(site, [first])
    assert ClinicalRecord.objects.get().json_owed
    assert write_owed_clinical_json() == 1
    record = ClinicalRecord.objects.get()
    assert not record.json_owed and _json(local_warehouse, record)["age"] == 51


def test_a_withdrawn_patients_record_is_never_written(
        site, local_warehouse, make_user, django_capture_on_commit_callbacks):
    _confirm_and_die(site, make_user, django_capture_on_commit_callbacks, [{"age": 50, "sex": 1}])
    record = ClinicalRecord.objects.get()
    Withdrawal.objects.create(pseudonym=record.pseudonym, requested_by="dm", reason="request")
    assert write_owed_clinical_json() == 0
    assert not [key for key in local_warehouse.list() if "/data/" in key]
