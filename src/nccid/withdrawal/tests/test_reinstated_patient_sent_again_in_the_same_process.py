"""A process that stored a patient's images (the node's worker, a portal worker) and then ran
their withdrawal, which deleted the patient's folders, stores them again on the first batch
after a reinstatement: the folders it remembered making are made again."""

from __future__ import annotations

import pytest

from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.services import reinstate, withdraw

from .conftest import send_images

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_withdrawn_reinstated_and_sent_again_is_stored_on_the_first_batch(site, patients, manager):
    patient = patients[0]
    withdraw(manager, patient.pseudonym, "Sent in error", refresh=False)
    assert reinstate(manager, patient.pseudonym, "Withdrawn in error")

    outcomes = send_images(site, patient.person, study=1)

    assert {o.status for o in outcomes} == {"stored"}, outcomes
    assert ImageRecord.objects.filter(pseudonym=patient.pseudonym).count() == 3
