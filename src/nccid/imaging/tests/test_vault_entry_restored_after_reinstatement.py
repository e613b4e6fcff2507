"""A running node puts a patient's NHS number back in the vault when a file of theirs arrives
after their entry was deleted (withdrawal deletes it; reinstatement does not restore it), so
a data manager can reveal the pseudonym again without a restart."""

from __future__ import annotations

import pytest

from nccid.identity.models import VaultEntry
from nccid.identity.service import reveal
from nccid.imaging.intake import ingest
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def test_a_deleted_vault_entry_is_stored_again_by_the_same_process(site, keyring, make_user,
                                                                   person_factory):
    person = person_factory(60)
    pseudonym = keyring.pseudonym(person.nhs_number)

    def send(study: int) -> IngestStatus:
        ds = synthetic_instance(person, plant=False, patient_id=person.nhs_number, study=study)
        return ingest(to_bytes(ds), site, "node").status

    assert send(1) is IngestStatus.STORED
    assert VaultEntry.objects.filter(pseudonym=pseudonym).count() == 1
    VaultEntry.objects.filter(pseudonym=pseudonym).delete()  # as a withdrawal does
    assert send(2) is IngestStatus.STORED
    assert VaultEntry.objects.filter(pseudonym=pseudonym).count() == 1
    assert reveal(make_user("data-manager"), pseudonym, "audit check") == person.nhs_number
