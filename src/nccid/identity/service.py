"""Django-side identity services: the installation key check and the key vault.

The vault (``VaultEntry``, its own database) maps each pseudonym to its NHS/CHI number,
AES-256-GCM encrypted with the pseudonym as associated data. Only data managers can decrypt,
and every attempt, granted or not, is written to the audit log with who, when, which
pseudonym and why. Nothing here writes an identifier anywhere else, and no message repeats one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import islice
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from django.db import DatabaseError, connections, router, transaction

from nccid.config import get_settings
from nccid.identity.keys import (
    PSEUDONYM_PATTERN,
    KeyFileError,
    KeyFileMissing,
    Keyring,
    load_keyring,
)
from nccid.identity.numbers import InvalidPatientNumber, validate_patient_number
from nccid.identity.reasons import identifier_in_reason

VAULT_DB = "vault"
_CHUNK = 2000  # well under SQLite's and PostgreSQL's bound-parameter limits


class VaultAccessDenied(PermissionError):
    """The user may not reveal (wrong role, inactive, no reason): the attempt was audited."""


class ReasonRequired(VaultAccessDenied, ValueError):
    """A reveal without a usable reason (empty, or seeming to hold an identifier)."""


class UnknownPseudonym(LookupError):
    pass


class VaultEntryUnreadable(KeyFileError):
    """A vault entry cannot be decrypted with the key file: the message says why and what to do."""


class VaultKeyMismatch(VaultEntryUnreadable):
    """A vault entry was encrypted under a vault key the key file does not hold."""


class VaultEntryDamaged(VaultEntryUnreadable):
    """A vault entry labelled with the key file's vault key does not decrypt: it was altered."""


class StagedNumbersUnreadable(ValueError):
    """A checked upload's staged numbers no longer decrypt (its key changed since the check)."""


@lru_cache(maxsize=1)
def get_keyring() -> Keyring:
    return load_keyring(get_settings().key_file)


def reset_keyring_cache() -> None:
    get_keyring.cache_clear()


def normalise_pseudonym(text: str) -> str | None:
    """``NCCID-XXXXXXXXXXXXXXXX`` (upper-cased, trimmed), or None when ``text`` is not one."""
    candidate = (text or "").strip().upper()
    return candidate if PSEUDONYM_PATTERN.fullmatch(candidate) else None


# --- installation key -------------------------------------------------------------------


def installation_has_data() -> bool:
    """True once any key-dependent data exists (vault or main database)."""
    from nccid.accounts.models import Site, User

    from .models import KeyCheck, VaultEntry

    try:
        return (KeyCheck.objects.exists() or VaultEntry.objects.exists()
                or Site.objects.exists() or User.objects.exists())
    except DatabaseError:  # not migrated yet: nothing can have been made with a key
        return False


def main_patient_count() -> int:
    """The main database's patients (pseudonyms with a set or a clinical record); 0 when its
    tables are not made yet."""
    try:
        return _main_patients().count()
    except DatabaseError:
        return 0


def main_database_in_use() -> bool:
    """Whether the main database holds sites, accounts or patients (False before migration)."""
    from nccid.accounts.models import Site, User

    try:
        return Site.objects.exists() or User.objects.exists() or main_patient_count() > 0
    except DatabaseError:
        return False


def vault_entry_count() -> int:
    """The vault's entries; 0 when its tables are not made yet."""
    from .models import VaultEntry

    try:
        return VaultEntry.objects.count()
    except DatabaseError:
        return 0


def _main_patients():
    """Every patient's pseudonym the main database names (a set or a clinical record), once."""
    from nccid.clinical.models import ClinicalRecord
    from nccid.warehouse.models import PatientSet

    return (PatientSet.objects.values_list("pseudonym", flat=True)
            .union(ClinicalRecord.objects.values_list("pseudonym", flat=True)))


def record_installation_key() -> None:
    """Remember the key's fingerprint (first run of 'nccid init')."""
    from .models import KeyCheck

    if not KeyCheck.objects.exists():
        KeyCheck.objects.create(fingerprint=get_keyring().fingerprint)


def check_installation_key() -> None:
    """Fail clearly when the key file is missing or is not the one the data was made with.

    Reads only; raises KeyFileError whose message says what to do. Nothing is changed.
    """
    from .models import KeyCheck

    key_file = get_settings().key_file
    try:
        keyring = get_keyring()
    except KeyFileMissing:  # (one that cannot be read says so, whatever the data)
        if not installation_has_data():
            raise
        raise KeyFileError(
            f"key file {key_file} is missing but this installation already holds data made "
            "with a key: restore the key file from backup (see docs/keys.md); nothing was changed"
        ) from None
    known = KeyCheck.objects.values_list("fingerprint", flat=True).first()
    if known is not None and known != keyring.fingerprint:
        raise KeyFileError(
            f"the key file {key_file} (fingerprint {keyring.fingerprint}) is not the key this "
            f"installation was created with (fingerprint {known}): restore the original key "
            "file (see docs/keys.md); nothing was changed"
        )
    latest = latest_vault_key()
    if latest is not None and latest != keyring.vault_fingerprint:
        raise _vault_key_mismatch(key_file, keyring.vault_fingerprint, latest)


@dataclass(frozen=True)
class _Rekey:
    old: str
    new: str
    at: datetime


def _vault_key_mismatch(key_file, held: str, vault_key: str) -> KeyFileError:
    """Which of the two is older, the key file or the vault, as the main database's record of
    re-keys ('vault.rekey' audit events, old -> new vault key) tells."""
    rekeys = _rekeys()
    vault_behind = _rekeys_between(vault_key, held, rekeys)
    if vault_behind:
        first = vault_behind[0]
        return KeyFileError(
            f"the vault database (vault_database_url) is older than the re-key of "
            f"{first.at:%Y-%m-%d %H:%M} UTC (vault key {first.old} to {first.new}): its entries "
            f"are under vault key {vault_key}, and the key file {key_file} holds the current "
            f"vault key {held}. Keep the key file; restore a vault backup made after that "
            "re-key (see docs/keys.md); nothing was changed"
        )
    if _rekeys_between(held, vault_key, rekeys) or not rekeys:
        return KeyFileError(
            f"the key file {key_file} holds vault key {held}, but the vault is encrypted under "
            f"vault key {vault_key}: it is a copy from before a 'nccid vault rekey'. Restore the "
            f"current key file (vault key {vault_key}; check a copy with 'nccid key fingerprint "
            "--file COPY', see docs/keys.md); nothing was changed"
        )
    return KeyFileError(  # no record links the two (the main database restored too?)
        f"the key file {key_file} holds vault key {held}, but the vault is encrypted under "
        f"vault key {vault_key}, and no recorded re-key links the two: restore the key file "
        f"holding vault key {vault_key}, or a vault backup under vault key {held} (check a key "
        "file copy with 'nccid key fingerprint --file COPY', see docs/keys.md); nothing was "
        "changed"
    )


def _rekeys() -> list[_Rekey]:
    """Every recorded vault re-key, oldest first (a handful: one a year or so)."""
    from nccid.accounts.models import AuditEvent

    events = AuditEvent.objects.filter(action="vault.rekey").order_by("at", "id")
    return [_Rekey(detail["old_vault_key"], detail["new_vault_key"], at)
            for detail, at in events.values_list("detail", "at")
            if isinstance(detail, dict) and {"old_vault_key", "new_vault_key"} <= detail.keys()]


def _rekeys_between(start: str, end: str, rekeys: list[_Rekey]) -> list[_Rekey]:
    """The re-keys that led from vault key ``start`` to ``end``, in order ([] when none did)."""
    path, current = [], start
    for rekey in rekeys:
        if rekey.old == current:
            path.append(rekey)
            current = rekey.new
            if current == end:
                return path
    return []


def latest_vault_key() -> str | None:
    """The vault key fingerprint of the newest vault entry (None for an empty vault).

    A re-key relabels every entry and intake labels new ones with the key file's vault key,
    so the newest entry names the vault key a usable key file must hold: one indexed read,
    cheap enough for every start-up.
    """
    from .models import VaultEntry

    return VaultEntry.objects.order_by("-id").values_list("key_fingerprint", flat=True).first()


def vault_keys_in_use() -> dict[str, int]:
    """{vault key fingerprint: entries} over the whole vault (for 'nccid key check')."""
    from django.db.models import Count

    from .models import VaultEntry

    rows = VaultEntry.objects.values("key_fingerprint").annotate(n=Count("id")).order_by()
    return {row["key_fingerprint"]: row["n"] for row in rows}


# --- what 'nccid key check' reads of the vault ------------------------------------------

VAULT_SAMPLE = 1000  # entries decrypted by 'nccid key check': all of a smaller vault
_EXAMPLES = 3  # pseudonyms named in a message, the rest counted


@dataclass(frozen=True)
class VaultReading:
    """What 'nccid key check' found: entries decrypted and those that did not give their
    patient's number; the main database's patients and those without a vault entry. Holds
    pseudonyms and counts only."""

    entries: int
    read: int
    damaged: int
    damaged_examples: list[str]
    patients: int
    missing: int
    missing_examples: list[str]

    @property
    def sampled(self) -> bool:
        return self.read < self.entries


def read_vault(sample: int | None = None) -> VaultReading:
    """Decrypt vault entries (all, or ``sample`` spread from the first to the newest) and
    find the main database's patients with no vault entry. Entries under another vault key
    are not decrypted (``vault_keys_in_use`` reports them)."""
    from .models import VaultEntry

    keyring = get_keyring()
    entries = VaultEntry.objects.count()
    read, damaged = 0, []
    for pseudonym, ciphertext, label in _entries_spread(sample or VAULT_SAMPLE, entries):
        if label != keyring.vault_fingerprint:
            continue
        read += 1
        if not _holds_its_number(keyring, pseudonym, bytes(ciphertext)):
            damaged.append(pseudonym)
    patients, missing, examples = _patients_without_entry()
    return VaultReading(entries, read, len(damaged), damaged[:_EXAMPLES],
                        patients, missing, examples)


def _entries_spread(size: int, entries: int) -> Iterator[tuple[str, bytes, str]]:
    """(pseudonym, ciphertext, vault key) of every entry, or of ``size`` entries picked at
    even steps of id from the first to the newest: one indexed read each, whatever the size
    of the vault (a national one holds millions)."""
    from django.db.models import Max, Min

    from .models import VaultEntry

    fields = ("pseudonym", "ciphertext", "key_fingerprint")
    if entries <= size:
        yield from VaultEntry.objects.order_by("id").values_list(*fields).iterator()
        return
    bounds = VaultEntry.objects.aggregate(low=Min("id"), high=Max("id"))
    low, high = bounds["low"], bounds["high"]
    seen = set()
    for step in range(size):
        target = low + (high - low) * step // (size - 1)
        row = (VaultEntry.objects.filter(id__gte=target).order_by("id")
               .values_list("id", *fields).first())
        if row is not None and row[0] not in seen:
            seen.add(row[0])
            yield row[1:]


def _holds_its_number(keyring: Keyring, pseudonym: str, ciphertext: bytes) -> bool:
    """Whether the entry decrypts to a number whose pseudonym is the entry's own."""
    try:
        digits = keyring.decrypt(ciphertext, context=pseudonym).decode("ascii")
        return keyring.pseudonym(digits) == pseudonym
    except (InvalidTag, ValueError):  # altered, or not ten digits inside
        return False


def _patients_without_entry() -> tuple[int, int, list[str]]:
    """(patients of the main database, how many have no vault entry, the first of those): a
    patient is a set or a clinical record's pseudonym, a withdrawn one excepted (its entry
    is removed on purpose). Compared by pseudonym a chunk at a time, in order, each chunk
    against the vault's entries in its range (one index scan, not thousands of lookups): no
    number is read, and memory stays small whatever the count."""
    from nccid.withdrawal.models import Withdrawal

    from .models import VaultEntry

    withdrawn = set(Withdrawal.objects.values_list("pseudonym", flat=True))
    named = _main_patients().order_by("pseudonym")
    entries = VaultEntry.objects.values_list("pseudonym", flat=True)
    patients, missing, examples = 0, 0, []
    current = (p for p in named.iterator(chunk_size=_CHUNK) if p not in withdrawn)
    while chunk := list(islice(current, _CHUNK)):
        present = set(entries.filter(pseudonym__gte=chunk[0], pseudonym__lte=chunk[-1]))
        absent = [p for p in chunk if p not in present]
        if absent:  # asked by name too: the two databases might order text differently
            present = set(entries.filter(pseudonym__in=absent))
            absent = [p for p in absent if p not in present]
        patients, missing = patients + len(chunk), missing + len(absent)
        examples += absent[:_EXAMPLES - len(examples)]
    return patients, missing, examples


# --- pseudonyms and vault ---------------------------------------------------------------


def pseudonymise(raw_number: object) -> tuple[str, str]:
    """(pseudonym, normalised number). Raises InvalidPatientNumber with a reason."""
    digits = validate_patient_number(raw_number)
    return get_keyring().pseudonym(digits), digits


def encrypt_for_vault(pseudonym: str, digits: str) -> bytes:
    return get_keyring().encrypt(digits.encode("ascii"), context=pseudonym)


# The key of numbers staged with a checked upload until it is confirmed: derived from the
# master key, which a vault re-key keeps, so a re-key between check and confirmation leaves
# them readable; they reach the vault only re-encrypted under the vault key of that moment.
STAGING_PURPOSE = "vault-staging"


def seal_for_staging(pseudonym: str, digits: str) -> bytes:
    """The number encrypted for an upload's staged data (never the vault's own ciphertext)."""
    return get_keyring().encrypt(digits.encode("ascii"), context=pseudonym, purpose=STAGING_PURPOSE)


def store_staged_in_vault(sealed: dict[str, bytes], legacy: dict[str, bytes] | None = None) -> int:
    """Store a confirmed upload's numbers: each ``sealed`` one (``seal_for_staging``) is
    decrypted, checked and re-encrypted under the current vault key. ``legacy`` holds vault
    ciphertext staged by older versions, checked to decrypt under the current vault key.

    Raises StagedNumbersUnreadable (nothing stored) when one does not decrypt.
    """
    keyring = get_keyring()
    numbers = {p: _unseal(keyring, p, token, STAGING_PURPOSE) for p, token in sealed.items()}
    numbers.update({p: _unseal(keyring, p, token, "vault") for p, token in (legacy or {}).items()})
    return _insert_entries({p: keyring.encrypt(d.encode("ascii"), p) for p, d in numbers.items()},
                           keyring.vault_fingerprint)


def _unseal(keyring: Keyring, pseudonym: str, token: bytes, purpose: str) -> str:
    try:
        return validate_patient_number(keyring.decrypt(token, pseudonym, purpose).decode("ascii"))
    except (InvalidTag, ValueError):  # ValueError: too short, not ASCII, not a valid number
        raise StagedNumbersUnreadable(
            "the numbers of this checked upload cannot be read with the current key file (the "
            "vault was re-keyed or the key file changed since the check): check the "
            "spreadsheet again"
        ) from None


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def store_in_vault(entries: dict[str, bytes]) -> int:
    """Store {pseudonym: ciphertext} pairs not yet in the vault; returns how many were new.

    An entry already in the vault is kept as it is (ON CONFLICT DO NOTHING, which also covers
    two imports racing). Plain SQL rather than the ORM: a first import of a large sheet stores
    tens of thousands of entries, and preparing that many model instances costs seconds.
    """
    return _insert_entries(entries, get_keyring().vault_fingerprint)


def _insert_entries(entries: dict[str, bytes], fingerprint: str) -> int:
    from django.utils import timezone

    from .models import VaultEntry

    if not entries:
        return 0
    connection = connections[router.db_for_write(VaultEntry)]
    quote = connection.ops.quote_name
    table = quote(VaultEntry._meta.db_table)
    names = ", ".join(quote(c) for c in ("pseudonym", "ciphertext", "key_fingerprint", "created"))
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    pseudonyms, ciphertexts = list(entries), [bytes(c) for c in entries.values()]
    inserted = 0
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement whatever the size: the two columns go as arrays.
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT p, c, %s, %s FROM unnest(%s::text[], %s::bytea[])"
                " AS t(p, c) ON CONFLICT (pseudonym) DO NOTHING",
                [fingerprint, now, pseudonyms, ciphertexts])
            return cursor.rowcount
        per_statement = max(1, min(1000, (connection.features.max_query_params or 999) // 4))
        for start in range(0, len(pseudonyms), per_statement):
            batch = range(start, min(start + per_statement, len(pseudonyms)))
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES " + ", ".join(["(%s, %s, %s, %s)"] * len(batch))
                + " ON CONFLICT (pseudonym) DO NOTHING",
                [v for i in batch for v in (pseudonyms[i], ciphertexts[i], fingerprint, now)])
            inserted += cursor.rowcount
    return inserted


@dataclass(frozen=True)
class RevealRequest:
    user: object
    pseudonym: str  # as typed; only audited once it is known to be a pseudonym
    reason: str


def _deny(request: RevealRequest, pseudonym: str, cause: str,
          exc_type: type[Exception] = VaultAccessDenied) -> NoReturn:
    """Audit a refused reveal, then raise. Never audits a value that might be an identifier."""
    audit_refused_reveal(request.user, pseudonym, request.reason, cause)
    raise exc_type(cause)


def audit_refused_reveal(user, typed_pseudonym: str, reason: str, cause: str) -> None:
    """Record a refused reveal (``vault.reveal.denied``): the pseudonym only when it is one,
    the reason only when it seems to hold no identifier (e.g. a portal form sent incomplete)."""
    from nccid.accounts.models import audit

    reason = (reason or "").strip()
    if identifier_in_reason(reason):
        reason = "[withheld: the reason may hold an identifier]"
    audit(user, "vault.reveal.denied", pseudonym=normalise_pseudonym(typed_pseudonym) or "",
          reason=reason, cause=cause)


def reveal(user, pseudonym: str, reason: str) -> str:
    """The NHS/CHI number of a pseudonym, for active data managers only, always audited.

    Every attempt leaves an ``AuditEvent``: ``vault.reveal`` when granted, else
    ``vault.reveal.denied`` with the cause in ``detail["cause"]``.
    """
    from nccid.accounts.models import audit

    from .models import VaultEntry

    request = RevealRequest(user, pseudonym, reason)
    name = normalise_pseudonym(pseudonym)
    if not getattr(user, "is_active", False) or not getattr(user, "may_open_vault", False):
        _deny(request, name or "", "only data managers may reveal an NHS/CHI number")
    if name is None:
        # What was typed may be an identifier: it is neither audited nor echoed.
        _deny(request, "", "that is not a pseudonym (NCCID- and 16 letters or digits 2-7)",
              UnknownPseudonym)
    if not reason or not reason.strip():
        _deny(request, name, "a reason is required to reveal an NHS/CHI number", ReasonRequired)
    problem = identifier_in_reason(reason.strip())
    if problem:
        _deny(request, name, problem, ReasonRequired)
    entry = VaultEntry.objects.filter(pseudonym=name).first()
    if entry is None:
        _deny(request, name, f"no vault entry for {name}", UnknownPseudonym)
    try:
        number = _decrypt_entry(entry)
    except VaultEntryUnreadable as exc:
        _deny(request, name, str(exc), type(exc))
    # Audited before the number is returned: a failed audit write means no number.
    audit(user, "vault.reveal", pseudonym=name, reason=reason.strip())
    return number


def _decrypt_entry(entry) -> str:
    keyring = get_keyring()
    try:
        return keyring.decrypt(bytes(entry.ciphertext), context=entry.pseudonym).decode("ascii")
    except (InvalidTag, ValueError):  # ValueError: shorter than a nonce, or not ASCII inside
        if entry.key_fingerprint == keyring.vault_fingerprint:
            raise VaultEntryDamaged(
                f"the vault entry for {entry.pseudonym} is damaged (it does not decrypt with "
                "its own vault key): restore the vault database from backup (see docs/keys.md)"
            ) from None
        raise VaultKeyMismatch(
            f"the vault entry for {entry.pseudonym} was encrypted with vault key "
            f"{entry.key_fingerprint}, but the key file holds vault key "
            f"{keyring.vault_fingerprint}: restore the matching key file (see docs/keys.md)"
        ) from None


def rekey_vault(new_keyring: Keyring) -> int:
    """Re-encrypt every vault entry under ``new_keyring``'s vault key, in one transaction.

    Each entry is decrypted with the current key and checked to be a valid number before it
    is re-encrypted, so a corrupt vault stops the re-key with nothing changed.
    """
    from .models import VaultEntry

    if new_keyring.fingerprint != get_keyring().fingerprint:
        raise KeyFileError("a vault re-key keeps the pseudonym key: the master keys differ")
    count = 0
    with transaction.atomic(using=VAULT_DB):
        ids = list(VaultEntry.objects.order_by("id").values_list("id", flat=True))
        for chunk in _chunks(ids, 500):
            changed = []
            for entry in VaultEntry.objects.select_for_update().filter(id__in=chunk):
                digits = _decrypt_entry(entry)
                try:
                    validate_patient_number(digits)
                except InvalidPatientNumber as exc:
                    raise KeyFileError(
                        f"vault entry for {entry.pseudonym} does not decrypt to a valid number; "
                        "re-key stopped, nothing was changed"
                    ) from exc
                entry.ciphertext = new_keyring.encrypt(digits.encode("ascii"), entry.pseudonym)
                entry.key_fingerprint = new_keyring.vault_fingerprint
                changed.append(entry)
            VaultEntry.objects.bulk_update(changed, ["ciphertext", "key_fingerprint"])
            count += len(changed)
    return count


__all__ = [
    "KeyFileError",
    "ReasonRequired",
    "StagedNumbersUnreadable",
    "UnknownPseudonym",
    "VaultAccessDenied",
    "VaultEntryDamaged",
    "VaultEntryUnreadable",
    "VaultKeyMismatch",
    "audit_refused_reveal",
    "check_installation_key",
    "encrypt_for_vault",
    "get_keyring",
    "installation_has_data",
    "main_database_in_use",
    "main_patient_count",
    "latest_vault_key",
    "normalise_pseudonym",
    "pseudonymise",
    "read_vault",
    "record_installation_key",
    "rekey_vault",
    "reveal",
    "seal_for_staging",
    "store_in_vault",
    "store_staged_in_vault",
    "vault_entry_count",
    "vault_keys_in_use",
]
