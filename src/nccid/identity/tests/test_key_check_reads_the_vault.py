"""'nccid key check' (keys.md's "test a restore") reads the vault, not only the newest entry's
key label: it decrypts the entries (all, or a sample spread over a large vault) and finds
the main database's patients that have no vault entry (a vault restored alone from an older
backup), and fails naming pseudonyms, never an NHS/CHI number."""

from __future__ import annotations

import pytest

from nccid.cli.tests.clirun import run_cli
from nccid.clinical.tests.helpers import PEOPLE
from nccid.identity import service
from nccid.identity.models import VaultEntry
from nccid.identity.service import encrypt_for_vault, pseudonymise, store_in_vault
from nccid.warehouse.models import PatientSet
from nccid.withdrawal.models import Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def vaulted(people, site, *, in_vault=True) -> dict[str, str]:
    """{pseudonym: number} of patients the main database holds (a set each), in the vault too."""
    pairs = dict(pseudonymise(p.nhs_number) for p in people)
    PatientSet.objects.bulk_create(PatientSet(pseudonym=p, set_name="training", site=site)
                                   for p in pairs)
    if in_vault:
        store_in_vault({p: encrypt_for_vault(p, d) for p, d in pairs.items()})
    return pairs


def never_shows(result, numbers) -> None:
    assert not any(n in result.out + result.err for n in numbers)


def test_a_sound_vault_says_how_much_was_read(site, monkeypatch):
    vaulted(PEOPLE[:3], site)
    result = run_cli(monkeypatch, "key", "check")
    assert result.code == 0, result.err
    out = " ".join(result.out.split())
    assert "all 3 vault entries decrypt" in out
    assert "each of the 3 patients of the main database has a vault entry" in out


def test_patients_without_a_vault_entry_fail_the_check(site, monkeypatch):
    kept = vaulted(PEOPLE[:3], site)
    lost = vaulted(PEOPLE[3:5], site, in_vault=False)  # imported after the vault's backup
    withdrawn = vaulted(PEOPLE[5:6], site, in_vault=False)  # its entry removed on purpose
    Withdrawal.objects.create(pseudonym=next(iter(withdrawn)), requested_by="dm", reason="asked")

    result = run_cli(monkeypatch, "key", "check")

    assert result.code == 1
    text = result.err_text
    assert "2 of the 5 patients of the main database have no vault entry" in text, text
    assert all(p in text for p in lost) and not any(p in text for p in kept)
    assert "restore" in text and "vault_database_url" in text
    never_shows(result, [*kept.values(), *lost.values()])


def test_damaged_entries_fail_the_check(site, monkeypatch):
    pairs = vaulted(PEOPLE[:4], site)
    damaged = sorted(pairs)[1]
    VaultEntry.objects.filter(pseudonym=damaged).update(ciphertext=b"\x00" * 40)

    result = run_cli(monkeypatch, "key", "check")

    assert result.code == 1
    assert f"1 of the 4 vault entries read does not decrypt to its patient's number " \
           f"({damaged})" in result.err_text, result.err_text
    assert "restore the vault database from a backup" in result.err_text
    never_shows(result, pairs.values())


def test_an_entry_holding_another_patients_number_is_damaged(site, monkeypatch, keyring):
    pairs = vaulted(PEOPLE[:2], site)
    first, second = sorted(pairs)
    # Encrypted for its own pseudonym, so it decrypts; but the number is another patient's.
    VaultEntry.objects.filter(pseudonym=first).update(
        ciphertext=keyring.encrypt(pairs[second].encode("ascii"), first))
    result = run_cli(monkeypatch, "key", "check")
    assert result.code == 1 and f"({first})" in result.err_text, result.err_text
    never_shows(result, pairs.values())


def test_a_large_vault_is_sampled_from_first_entry_to_last(site, monkeypatch):
    pairs = vaulted(PEOPLE[:10], site)
    newest = VaultEntry.objects.order_by("-id").values_list("pseudonym", flat=True).first()
    VaultEntry.objects.filter(pseudonym=newest).update(ciphertext=b"\x00" * 40)
    monkeypatch.setattr(service, "VAULT_SAMPLE", 3)

    result = run_cli(monkeypatch, "key", "check")

    assert result.code == 1
    assert f"1 of 3 vault entries read (a sample spread over all 10) does not decrypt to " \
           f"its patient's number ({newest})" in result.err_text, result.err_text
    never_shows(result, pairs.values())
