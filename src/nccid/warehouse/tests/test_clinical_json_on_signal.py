"""Accepted clinical records appear in the warehouse as {set}/data/<pseudonym>/<kind>-<SITE>.json."""

from __future__ import annotations

import json
import logging

from nccid.clinical.signals import AcceptedRecord, records_accepted
from nccid.synthetic.people import people
from nccid.warehouse.models import ImageRecord, PatientSet
from nccid.warehouse.service import store_image


def test_records_accepted_writes_clinical_json(site, backend, keyring):
    persons = people(3, seed=5)
    records = [
        AcceptedRecord(keyring.pseudonym(persons[0].nhs_number), "H-AAAA", "positive",
                       {"age": 63, "sex": "Male", "date_of_admission": "2020-04-01", "death": "No"}),
        AcceptedRecord(keyring.pseudonym(persons[1].nhs_number), None, "negative",
                       {"swabs": [{"date": "2020-05-02", "status": "Negative"}],
                        "any_positive_swab": False}),
        AcceptedRecord(keyring.pseudonym(persons[0].nhs_number), "H-AAAA", "isaric",
                       {"outcome": "Discharged", "isaric_4c_score": 7}),
    ]
    records_accepted.send(sender=None, site=site, records=records, upload_id=1)

    sets = dict(PatientSet.objects.values_list("pseudonym", "set_name"))
    assert len(sets) == 2
    expected = {f"{sets[r.pseudonym]}/data/{r.pseudonym}/{r.kind}-RTEST.json": r.cleaned for r in records}
    written = [k for k in backend.list() if "/data/" in k]
    assert sorted(written) == sorted(expected)
    for key, cleaned in expected.items():
        assert json.loads(backend.read(key)) == cleaned
    # Nothing but the cleaned record: the hospital-number hash stays in the database.
    assert all(b"H-AAAA" not in backend.read(k) for k in written)


def test_updated_record_replaces_its_file_and_links_waiting_images(site, local_warehouse, keyring,
                                                                   make_image):
    pseudonym, data, meta = make_image(4, "DX")
    store_image(site, pseudonym, data, meta, linked=False)
    record = AcceptedRecord(pseudonym, None, "positive", {"age": 40})
    records_accepted.send(sender=None, site=site, records=[record], upload_id=1)
    records_accepted.send(sender=None, site=site,
                          records=[AcceptedRecord(pseudonym, None, "positive", {"age": 41})], upload_id=2)

    set_name = PatientSet.objects.get(pseudonym=pseudonym).set_name
    key = f"{set_name}/data/{pseudonym}/positive-RTEST.json"
    assert json.loads(local_warehouse.read(key)) == {"age": 41}
    assert [k for k in local_warehouse.list() if "/data/" in k] == [key]
    # The image and its clinical record are in the same set, and the image is now linked.
    image = ImageRecord.objects.get(sop_uid=meta.sop_uid)
    assert image.set_name == set_name and image.linked


def test_storage_failure_does_not_fail_the_sender(site, tmp_path, monkeypatch, keyring, caplog):
    from nccid.config import reset_settings_cache

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the warehouse should be")
    monkeypatch.setenv("STORAGE_URL", str(blocker))
    reset_settings_cache()
    try:
        pseudonym = keyring.pseudonym(people(1, seed=6)[0].nhs_number)
        records_accepted.send(sender=None, site=site, records=[
            AcceptedRecord(pseudonym, None, "positive", {"age": 50})], upload_id=3)
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert "sync-clinical" in caplog.text
    assert pseudonym not in caplog.text
    # One clear line, no traceback: an unreachable store is an outage, not a bug.
    [failure] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert failure.exc_info is None and "sync-clinical" in failure.getMessage()
