"""A patient whose objects are in the warehouse but whom the database does not know (databases
restored from a backup older than the warehouse): ``patient show`` counts the objects in their
folders, and the withdrawal, refused before as "nothing in the database names" them, removes
them and records their set for researchers' feed."""

from __future__ import annotations

import pytest

from nccid.warehouse.service import get_warehouse
from nccid.withdrawal.models import Withdrawal
from nccid.withdrawal.services import WithdrawalError, holdings, look_up, withdraw

from .conftest import PEOPLE

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

UIDS = "1.2.826.0.1.3680043.10.1/1.2.826.0.1.3680043.10.2/1.2.826.0.1.3680043.10.3"


@pytest.fixture
def left_in_the_warehouse(keyring, local_warehouse) -> str:
    """A patient's image, header and clinical JSON, and no row naming them."""
    pseudonym = keyring.pseudonym(PEOPLE[4].nhs_number)
    warehouse = get_warehouse()
    for key in (f"validation/xray/{pseudonym}/{UIDS}.dcm",
                f"validation/xray-metadata/{pseudonym}/{UIDS}.json",
                f"validation/data/{pseudonym}/positive-RTH.json"):
        warehouse.write_atomic(key, b"{}")
    return pseudonym


def test_show_counts_what_their_folders_hold(left_in_the_warehouse):
    held = holdings(left_in_the_warehouse)
    assert (held.images, held.clinical_records) == (0, 0)
    assert (held.objects, held.unnamed_objects) == (3, 3) and not held.empty


def test_the_withdrawal_takes_them_without_force(left_in_the_warehouse, manager):
    assert look_up(manager, left_in_the_warehouse).found  # in the warehouse: no typing error

    removed = withdraw(manager, left_in_the_warehouse, "Patient objected by letter")

    assert removed.objects == 3
    assert holdings(left_in_the_warehouse).objects == 0
    assert Withdrawal.objects.get().removed["set_name"] == "validation"  # researchers are told


def test_a_pseudonym_named_nowhere_is_still_refused(keyring, local_warehouse, manager):
    with pytest.raises(WithdrawalError, match="nothing in the database or the warehouse names"):
        look_up(manager, keyring.pseudonym(PEOPLE[5].nhs_number))
