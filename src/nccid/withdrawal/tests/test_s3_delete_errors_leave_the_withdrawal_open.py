"""S3 answers a DeleteObjects request with success and lists the keys it could not delete
(InternalError, SlowDown, AccessDenied). A withdrawal must not take those objects for gone:
it stops before deleting the rows that name them, stays interrupted, and withdrawing again
removes them."""

from __future__ import annotations

import pytest
import s3fs

from nccid.warehouse.models import ImageRecord
from nccid.warehouse.storage import StorageError
from nccid.withdrawal.models import Withdrawal
from nccid.withdrawal.services import withdraw

from .conftest import keys_but_markers

pytestmark = [pytest.mark.django_db(databases=["default", "vault"]), pytest.mark.s3,
              pytest.mark.parametrize("backend", ["s3"], indirect=True)]


def _s3_fails_to_delete(monkeypatch, victim: str) -> None:
    """DeleteObjects keeps ``victim`` and reports it in Errors, as S3 does."""
    real_call = s3fs.S3FileSystem._call_s3

    async def one_key_fails(self, method, *args, **kwargs):
        if method != "delete_objects":
            return await real_call(self, method, *args, **kwargs)
        objects = kwargs["Delete"]["Objects"]
        failed = [o for o in objects if o["Key"].endswith(victim)]
        kwargs["Delete"]["Objects"] = [o for o in objects if o not in failed]
        answer = await real_call(self, method, *args, **kwargs)
        answer["Errors"] = [{"Key": o["Key"], "Code": "InternalError",
                             "Message": "We encountered an internal error. Please try again."}
                            for o in failed]
        return answer

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", one_key_fails)


def test_a_key_s3_did_not_delete_keeps_its_row_and_the_withdrawal_interrupted(
        patients, manager, backend, monkeypatch):
    gone, kept = patients
    victim = ImageRecord.objects.filter(pseudonym=gone.pseudonym).order_by("pk")[0].storage_key
    _s3_fails_to_delete(monkeypatch, victim)
    with pytest.raises(StorageError) as caught:
        withdraw(manager, gone.pseudonym, "Consent withdrawn", refresh=False)
    assert victim in str(caught.value) and "InternalError" in str(caught.value)
    assert backend.exists(victim)
    assert Withdrawal.objects.get().completed_at is None
    assert ImageRecord.objects.filter(pseudonym=gone.pseudonym).exists()  # the rows still name it

    monkeypatch.undo()
    removed = withdraw(manager, gone.pseudonym, "Consent withdrawn", refresh=False)
    assert [k for k in keys_but_markers(backend) if gone.pseudonym in k] == []
    assert Withdrawal.objects.get().completed_at is not None
    assert removed.images == 3
    assert ImageRecord.objects.filter(pseudonym=kept.pseudonym).count() == 3


def test_delete_many_counts_the_objects_deleted_not_those_asked_for(backend, monkeypatch):
    backend.write_many({"a/1.json": b"1", "a/2.json": b"2", "a/3.json": b"3"})
    _s3_fails_to_delete(monkeypatch, "a/2.json")
    with pytest.raises(StorageError, match=r"did not delete 1 of 3 objects: a/2\.json \(InternalError\)"):
        backend.delete_many(["a/1.json", "a/2.json", "a/3.json"])
    monkeypatch.undo()
    assert [backend.exists(f"a/{n}.json") for n in (1, 2, 3)] == [False, True, False]
    assert backend.delete_many(["a/2.json"]) == 1
    assert not backend.exists("a/2.json")
