"""The project's secret key file and the keyed functions derived from it.

One random master key lives in a key file (mode 0600). Every keyed function uses its own
sub-key derived with HKDF, so a pseudonym never shares a key with the vault cipher, the UID
mapping or Django's session signing. The vault cipher has a random key of its own beside it
(``vault_key``), so that a re-key can retire it: the master key cannot change. Losing the key file means no new upload can be linked to
old data: see docs/keys.md for backup and rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_VERSION = 1
PSEUDONYM_PREFIX = "NCCID-"
PSEUDONYM_PATTERN = re.compile(r"NCCID-[A-Z2-7]{16}")
_TEN_DIGITS = re.compile(r"[0-9]{10}")
# How ``date_shift_days`` draws an offset: backward only (new installations), or both ways
# (installations that shifted dates before backward only; recorded with the deid profile).
# What ``Keyring.encrypt`` adds to a plaintext: its nonce and AES-GCM tag.
SEALED_OVERHEAD = 12 + 16
SHIFT_BACKWARD = "backward"
SHIFT_BOTH_WAYS = "both-ways"


class KeyFileError(Exception):
    """The key file is missing, unreadable or not the key this installation was created with."""


class KeyFileMissing(KeyFileError):
    """No file at the key file's path (as opposed to one that cannot be read or used)."""


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def _encode(master: bytes, vault_key: bytes | None = None) -> str:
    body = {
        "version": KEY_FILE_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "master_key": base64.b64encode(master).decode("ascii"),
    }
    if vault_key is not None:
        body["vault_key"] = base64.b64encode(vault_key).decode("ascii")
    return json.dumps(body, indent=2) + "\n"


def write_key_file(path: Path, text: str) -> None:
    """Write a key file atomically with mode 0600; never replaces an existing file.

    The text goes to a private temporary file first, then is hard-linked into place, so a
    crash never leaves a half-written key and a concurrent 'nccid init' cannot overwrite one.
    """
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path} already exists: refusing to replace a key (data would be lost)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_of(path)  # left behind if killed: see remove_key_temporaries
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise KeyFileError(
                f"{path} already exists: refusing to replace a key (data would be lost)"
            ) from exc
        except OSError:  # a filesystem without hard links: exclusive create instead
            _write_exclusive(path, text)
    finally:
        tmp.unlink(missing_ok=True)


def _temporary_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def remove_key_temporaries(key_file: Path) -> list[Path]:
    """Delete the temporaries ``write_key_file`` leaves beside ``key_file`` when killed before
    its ``finally`` (each a full copy of a key file), and return them.

    Only its exact names: ``.<key>.<12 hex>.tmp`` ('nccid init'), ``.<key>.new.<12 hex>.tmp``
    and ``.<key>.retired-<time>[-NN].<12 hex>.tmp`` ('nccid vault rekey'). A write under way that
    loses its temporary still succeeds: the link fails and the file is written directly.
    """
    key_file = Path(key_file)
    pattern = re.compile(
        rf"\.{re.escape(key_file.name)}(?:\.new|\.{_RETIRED})?\.[0-9a-f]{{12}}\.tmp")
    try:
        names = sorted(os.listdir(key_file.parent))
    except OSError:  # no folder yet, or one this account cannot list: nothing of ours there
        return []
    removed = []
    for name in filter(pattern.fullmatch, names):
        path = key_file.parent / name
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


# A retired key file's suffix: its UTC time to the second, and a number from 02 on for a
# re-key that found that second's name taken (sorting after it, before the next second's).
_RETIRED = r"retired-[0-9]{8}T[0-9]{6}Z(?:-[0-9]{2,})?"


def retire_key_file(key_file: Path, now: datetime | None = None) -> Path:
    """Copy ``key_file`` (mode 0600) to ``<key>.retired-<UTC time>Z``, or ``…Z-02``, ``…Z-03``
    when a re-key in the same second took that name, and return the copy: a second re-key
    within a second was refused, after its transaction had committed. Never overwrites one."""
    key_file = Path(key_file)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = f"{key_file.name}.retired-{moment:%Y%m%dT%H%M%SZ}"
    text = key_file.read_text(encoding="utf-8")
    retired, number = key_file.with_name(stamp), 1
    while True:
        try:
            write_key_file(retired, text)
            return retired
        except KeyFileError:
            if not os.path.lexists(retired):  # not a name taken: a failure of its own
                raise
        number += 1
        retired = key_file.with_name(f"{stamp}-{number:02d}")


def _write_exclusive(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists: refusing to replace a key") from exc
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def create_key_file(path: Path) -> None:
    """Write a new random master key and vault key (mode 0600). Refuses to replace a key file.

    The vault key is random, not the master key's sub-key: the master key stays through every
    re-key, so a vault key derived from it could always be derived again, and vault backups
    from before a re-key would stay readable with the current key file.
    """
    write_key_file(path, _encode(secrets.token_bytes(32), secrets.token_bytes(32)))


def _decode_key(body: dict, name: str, path: Path) -> bytes:
    try:
        key = base64.b64decode(body[name], validate=True)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"key file {path}: {name} is not valid base64") from exc
    if len(key) != 32:
        raise KeyFileError(f"key file {path}: {name} has the wrong length")
    return key


def load_keyring(path: Path, *, copy: bool = False) -> Keyring:
    """The keyring of a key file; KeyFileError (with what to do) when missing or unusable.

    ``copy``: a backup copy being checked ('nccid key fingerprint --file'), not the live key
    file: its mode is not judged (FAT and exFAT media show 0755 and cannot change it), and
    messages do not name the ``key_file`` setting.
    """
    path = Path(path)
    setting = "" if copy else " (key_file)"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileMissing(
            f"key file {path} not found: run 'nccid init' for a new installation, "
            "or restore the key file from backup (see docs/keys.md)"
        ) from None
    except OSError as exc:  # a folder on the way this account may not enter
        raise _unreadable(path, setting, exc) from None
    if stat.S_ISDIR(mode):
        raise KeyFileError(f"cannot read key file {path}{setting}: it is a folder, not a key file")
    if not copy and os.name == "posix" and mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable or writable by other users: "
            f"run 'chmod 600 {path}' (see docs/keys.md)"
        )
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _unreadable(path, setting, exc) from None
    except ValueError as exc:  # not JSON, or not UTF-8 text (UnicodeDecodeError)
        raise KeyFileError(f"key file {path} is not a valid nccid key file") from exc
    if not isinstance(body, dict) or "master_key" not in body:
        raise KeyFileError(f"key file {path} is not a valid nccid key file")
    if body.get("version") != KEY_FILE_VERSION:
        raise KeyFileError(
            f"key file {path} has version {body.get('version')!r}; this nccid reads version "
            f"{KEY_FILE_VERSION}"
        )
    master = _decode_key(body, "master_key", path)
    vault_key = _decode_key(body, "vault_key", path) if "vault_key" in body else None
    return Keyring(master, vault_key)


def _unreadable(path: Path, setting: str, exc: OSError) -> KeyFileError:
    """'cannot read key file X (key_file): permission denied': what stopped it, not 'invalid'."""
    reason = (exc.strerror or type(exc).__name__).lower()
    if isinstance(exc, PermissionError):
        reason += (" (the account nccid runs as must own the file and reach its folder: "
                   "chown it to that account, then chmod 600; see docs/keys.md)")
    return KeyFileError(f"cannot read key file {path}{setting}: {reason}")


@dataclass(frozen=True)
class Keyring:
    """Keyed functions of the master key. Deterministic: same input, same output, every run."""

    master: bytes = field(repr=False)  # never in a repr, a log line or a traceback
    # A separately rotatable key for the vault cipher ('nccid vault rekey'). Absent only in
    # key files written before 'nccid init' made one: their vault key is derived from the
    # master key like every other sub-key until their first re-key.
    vault_key: bytes | None = field(default=None, repr=False)

    @property
    def vault_key_derived(self) -> bool:
        """Whether the vault key is the master key's sub-key, which anyone holding this key
        file, or any later one, can derive again: a re-key cannot retire it."""
        return self.vault_key is None

    def subkey(self, purpose: str) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"nccid-v1", info=purpose.encode()
        ).derive(self.master)

    @cached_property
    def fingerprint(self) -> str:
        """A public, non-reversible name for this key; stored with the data to detect a wrong key."""
        return hmac.new(self.subkey("fingerprint"), b"nccid", hashlib.sha256).hexdigest()[:16]

    @cached_property
    def vault_fingerprint(self) -> str:
        """A public name for the vault cipher key; stored with each vault entry."""
        return hmac.new(self._subkeys["vault"], b"nccid-vault-fingerprint", hashlib.sha256).hexdigest()[:16]

    def with_new_vault_key(self) -> Keyring:
        """The same pseudonym keys with a fresh random vault key (for 'nccid vault rekey')."""
        return Keyring(self.master, secrets.token_bytes(32))

    def key_file_text(self) -> str:
        """The key file body for this keyring (for writing a re-keyed file)."""
        return _encode(self.master, self.vault_key)

    def mac(self, purpose: str, message: str | bytes) -> bytes:
        if isinstance(message, str):
            message = message.encode("utf-8")
        return hmac.new(self._subkeys[purpose], message, hashlib.sha256).digest()

    @cached_property
    def _subkeys(self) -> dict[str, bytes]:
        purposes = ("pseudonym", "hospital", "uid", "split", "date-shift", "vault", "django", "pending",
                    "spool", "vault-staging")
        keys = {p: self.subkey(p) for p in purposes}
        if self.vault_key is not None:
            keys["vault"] = self.vault_key
        return keys

    def pseudonym(self, normalised_number: str) -> str:
        """``NCCID-`` plus 16 base32 characters (80 bits) of HMAC-SHA256 of the NHS/CHI number.

        Takes the normalised 10 digits only (``numbers.validate_patient_number``): the same
        person typed with spaces must never get a second pseudonym.
        """
        if not _TEN_DIGITS.fullmatch(normalised_number):
            raise ValueError("pseudonym() takes a normalised 10-digit number")
        return PSEUDONYM_PREFIX + _b32(self.mac("pseudonym", normalised_number)[:10])

    def hospital_hash(self, site_code: str, hospital_number: str) -> str:
        """Keyed hash of a hospital number scoped to its site (case and spaces folded)."""
        folded = "".join(hospital_number.split()).upper()
        if not folded:
            # A blank would link every patient without a hospital number at the site together.
            raise ValueError("hospital number is empty")
        return "H-" + _b32(self.mac("hospital", f"{site_code.upper()}\x00{folded}")[:10])

    def uid(self, original_uid: str) -> str:
        """A deterministic replacement UID under the 2.25 (UUID-derived) root, at most 64 chars."""
        digest = self.mac("uid", original_uid.strip().rstrip("\x00"))[:16]
        return "2.25." + str(int.from_bytes(digest, "big"))

    def split_fraction(self, pseudonym: str) -> float:
        """A stable number in [0, 1) per patient, used against the validation percentage."""
        return int.from_bytes(self.mac("split", pseudonym)[:8], "big") / 2**64

    def date_shift_days(self, pseudonym: str, max_days: int = 365,
                        scheme: str = SHIFT_BACKWARD) -> int:
        """A per-patient offset for the date-shifting profile: in [-max_days, -1] (``backward``:
        a shifted date is never after the real one, so never in the future), or, for an
        installation that shifted dates before that rule, [-max_days, -1] ∪ [1, max_days]
        (``both-ways``: its patients keep the offsets their data already have)."""
        number = int.from_bytes(self.mac("date-shift", pseudonym)[:4], "big")
        if scheme == SHIFT_BACKWARD:
            return -(number % max_days) - 1
        if scheme != SHIFT_BOTH_WAYS:
            raise ValueError(f"unknown date shift scheme {scheme!r}")
        value = number % (2 * max_days)
        return value - max_days if value < max_days else value - max_days + 1

    def django_secret(self) -> str:
        return base64.urlsafe_b64encode(self._subkeys["django"]).decode("ascii")

    def encrypt(self, plaintext: bytes, context: str, purpose: str = "vault") -> bytes:
        """AES-256-GCM; ``context`` is bound as associated data (e.g. the pseudonym)."""
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._subkeys[purpose]).encrypt(nonce, plaintext, context.encode())

    def encryptor(self, context: str, purpose: str = "vault"):
        """(nonce, AES-256-GCM encryptor with ``context`` bound) for a token made piece by
        piece: nonce, then each ``update``'s ciphertext, then the ``tag`` after ``finalize``.
        Their concatenation is the token ``encrypt`` would give, and ``decrypt`` reads it; an
        8 MB image is encrypted and written in pieces, never copied whole."""
        nonce = secrets.token_bytes(12)
        encryptor = Cipher(algorithms.AES(self._subkeys[purpose]), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(context.encode())
        return nonce, encryptor

    def decrypt(self, token: bytes, context: str, purpose: str = "vault") -> bytes:
        view = memoryview(token)  # slices of a view: the ciphertext is not copied first
        return AESGCM(self._subkeys[purpose]).decrypt(view[:12], view[12:], context.encode())

    def decryptor(self, token: bytes, context: str, purpose: str = "vault"):
        """(ciphertext, AES-256-GCM decryptor) of a token read piece by piece: each ``update``
        gives the plaintext of the ciphertext it is given, and ``finalize`` raises InvalidTag
        unless the whole token is authentic (nothing may be used before it returns). A
        spooled record's file comes out as one ``bytes``, without its prefix copied off."""
        view = memoryview(token)
        cipher = Cipher(algorithms.AES(self._subkeys[purpose]),
                        modes.GCM(bytes(view[:12]), bytes(view[-16:])))
        decryptor = cipher.decryptor()
        decryptor.authenticate_additional_data(context.encode())
        return view[12:-16], decryptor
