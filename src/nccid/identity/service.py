"""Django-side identity services: the installation key check and the key vault."""

from __future__ import annotations

from functools import lru_cache

from django.db import IntegrityError, transaction

from nccid.config import get_settings
from nccid.identity.keys import KeyFileError, Keyring, load_keyring
from nccid.identity.numbers import validate_patient_number


class VaultAccessDenied(PermissionError):
    pass


class UnknownPseudonym(LookupError):
    pass


@lru_cache(maxsize=1)
def get_keyring() -> Keyring:
    return load_keyring(get_settings().key_file)


def reset_keyring_cache() -> None:
    get_keyring.cache_clear()


def record_installation_key() -> None:
    """Remember the key's fingerprint (first run of 'nccid init')."""
    from .models import KeyCheck

    if not KeyCheck.objects.exists():
        KeyCheck.objects.create(fingerprint=get_keyring().fingerprint)


def check_installation_key() -> None:
    """Fail clearly when the key file is missing or is not the one the data was made with."""
    from .models import KeyCheck

    keyring = get_keyring()  # raises KeyFileError with a message when missing
    known = KeyCheck.objects.values_list("fingerprint", flat=True).first()
    if known is not None and known != keyring.fingerprint:
        raise KeyFileError(
            f"the key file {get_settings().key_file} is not the key this installation was "
            "created with: restore the original key file (see docs/keys.md); nothing was changed"
        )


def pseudonymise(raw_number: object) -> tuple[str, str]:
    """(pseudonym, normalised number). Raises InvalidPatientNumber with a reason."""
    digits = validate_patient_number(raw_number)
    return get_keyring().pseudonym(digits), digits


def encrypt_for_vault(pseudonym: str, digits: str) -> bytes:
    return get_keyring().encrypt(digits.encode("ascii"), context=pseudonym)


def store_in_vault(entries: dict[str, bytes]) -> int:
    """Store {pseudonym: ciphertext} pairs not yet in the vault; returns how many were new."""
    from .models import VaultEntry

    fingerprint = get_keyring().fingerprint
    existing = set(
        VaultEntry.objects.filter(pseudonym__in=list(entries)).values_list("pseudonym", flat=True)
    )
    new = [
        VaultEntry(pseudonym=p, ciphertext=c, key_fingerprint=fingerprint)
        for p, c in entries.items()
        if p not in existing
    ]
    try:
        with transaction.atomic(using="vault"):
            VaultEntry.objects.bulk_create(new, batch_size=2000, ignore_conflicts=True)
    except IntegrityError:  # pragma: no cover - ignore_conflicts covers races on both backends
        pass
    return len(new)


def reveal(user, pseudonym: str, reason: str) -> str:
    """The NHS/CHI number of a pseudonym, for data managers only, always audited."""
    from nccid.accounts.models import audit

    from .models import VaultEntry

    if not getattr(user, "is_data_manager", False):
        audit(user, "vault.reveal.denied", pseudonym=pseudonym, reason=reason)
        raise VaultAccessDenied("only data managers may reveal an NHS/CHI number")
    if not reason or not reason.strip():
        raise ValueError("a reason is required to reveal an NHS/CHI number")
    entry = VaultEntry.objects.filter(pseudonym=pseudonym).first()
    if entry is None:
        raise UnknownPseudonym(f"no vault entry for {pseudonym}")
    number = get_keyring().decrypt(bytes(entry.ciphertext), context=pseudonym).decode("ascii")
    audit(user, "vault.reveal", pseudonym=pseudonym, reason=reason.strip())
    return number


__all__ = [
    "KeyFileError",
    "UnknownPseudonym",
    "VaultAccessDenied",
    "check_installation_key",
    "encrypt_for_vault",
    "get_keyring",
    "pseudonymise",
    "record_installation_key",
    "reveal",
    "store_in_vault",
]
