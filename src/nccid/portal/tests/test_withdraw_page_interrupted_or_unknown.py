"""The withdraw page when the warehouse fails part-way: a clear message (interrupted, intake
already refuses the patient, withdraw again), not a server error; and a pseudonym nothing in
the database names is refused as a likely typing error."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.imaging.intake import ingest_many
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.models import Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def patient(site, keyring, local_warehouse):
    person = people(1, seed=32)[0]
    outcomes = ingest_many([to_bytes(synthetic_instance(person, patient_id=person.nhs_number, instance=i))
                            for i in (1, 2)], site, "test")
    assert {o.status for o in outcomes} == {"stored"}
    return keyring.pseudonym(person.nhs_number)


def test_a_warehouse_failure_part_way_says_the_withdrawal_was_interrupted(
        client, make_user, patient, local_warehouse, monkeypatch):
    def read_only(self, keys):
        raise OSError("Read-only file system")

    monkeypatch.setattr(type(local_warehouse), "delete_many", read_only)
    client.force_login(make_user("data-manager"))
    page = reverse("figures:withdraw")
    answer = client.post(page, {"patient": patient, "step": "withdraw", "reason": "Objected"})
    text = answer.content.decode()
    assert answer.status_code == 400
    assert "The withdrawal was interrupted" in text and "Intake already refuses this patient" in text
    assert "Withdraw the patient again to complete it" in text
    assert "Read-only file system" not in text
    assert Withdrawal.objects.get().completed_at is None

    monkeypatch.undo()
    again = client.post(page, {"patient": patient, "step": "withdraw", "reason": "Objected"},
                        follow=True)
    assert again.status_code == 200 and "has been withdrawn" in again.content.decode()
    assert Withdrawal.objects.get().completed_at is not None
    assert not ImageRecord.objects.filter(pseudonym=patient).exists()


def test_a_pseudonym_nothing_names_is_refused(client, make_user, patient):
    client.force_login(make_user("data-manager"))
    page = reverse("figures:withdraw")
    for step in ({}, {"step": "withdraw", "reason": "Objected"}):
        answer = client.post(page, {"patient": "NCCID-AAAAAAAAAAAAAAAA", **step})
        assert answer.status_code == 400
        assert ("Nothing in the database or the warehouse names this patient"
                in answer.content.decode())
    assert not Withdrawal.objects.exists()
