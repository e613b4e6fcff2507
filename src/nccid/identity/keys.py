"""The project's secret key file and the keyed functions derived from it.

One random master key lives in a key file (mode 0600). Every keyed function uses its own
sub-key derived with HKDF, so a pseudonym never shares a key with the vault cipher, the UID
mapping or Django's session signing. Losing the key file means no new upload can be linked to
old data: see docs/keys.md for backup and rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_VERSION = 1
PSEUDONYM_PREFIX = "NCCID-"


class KeyFileError(Exception):
    """The key file is missing, unreadable or not the key this installation was created with."""


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def create_key_file(path: Path) -> None:
    """Write a new random master key. Refuses to replace an existing key file."""
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path} already exists: refusing to replace a key (data would be lost)")
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "version": KEY_FILE_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "master_key": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(body, handle, indent=2)
        handle.write("\n")


def load_keyring(path: Path) -> Keyring:
    path = Path(path)
    if not path.exists():
        raise KeyFileError(
            f"key file {path} not found: run 'nccid init' for a new installation, "
            "or restore the key file from backup (see docs/keys.md)"
        )
    try:
        body = json.loads(path.read_text())
        master = base64.b64decode(body["master_key"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"key file {path} is not a valid nccid key file") from exc
    if len(master) != 32:
        raise KeyFileError(f"key file {path} holds a key of the wrong length")
    return Keyring(master)


@dataclass(frozen=True)
class Keyring:
    """Keyed functions of the master key. Deterministic: same input, same output, every run."""

    master: bytes

    def subkey(self, purpose: str) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"nccid-v1", info=purpose.encode()
        ).derive(self.master)

    @cached_property
    def fingerprint(self) -> str:
        """A public, non-reversible name for this key; stored with the data to detect a wrong key."""
        return hmac.new(self.subkey("fingerprint"), b"nccid", hashlib.sha256).hexdigest()[:16]

    def mac(self, purpose: str, message: str | bytes) -> bytes:
        if isinstance(message, str):
            message = message.encode("utf-8")
        return hmac.new(self._subkeys[purpose], message, hashlib.sha256).digest()

    @cached_property
    def _subkeys(self) -> dict[str, bytes]:
        purposes = ("pseudonym", "hospital", "uid", "split", "date-shift", "vault", "django", "pending")
        return {p: self.subkey(p) for p in purposes}

    def pseudonym(self, normalised_number: str) -> str:
        """``NCCID-`` plus 16 base32 characters (80 bits) of HMAC-SHA256 of the NHS/CHI number."""
        return PSEUDONYM_PREFIX + _b32(self.mac("pseudonym", normalised_number)[:10])

    def hospital_hash(self, site_code: str, hospital_number: str) -> str:
        """Keyed hash of a hospital number scoped to its site (case and spaces folded)."""
        folded = "".join(hospital_number.split()).upper()
        return "H-" + _b32(self.mac("hospital", f"{site_code.upper()}\x00{folded}")[:10])

    def uid(self, original_uid: str) -> str:
        """A deterministic replacement UID under the 2.25 (UUID-derived) root, at most 64 chars."""
        digest = self.mac("uid", original_uid.strip().rstrip("\x00"))[:16]
        return "2.25." + str(int.from_bytes(digest, "big"))

    def split_fraction(self, pseudonym: str) -> float:
        """A stable number in [0, 1) per patient, used against the validation percentage."""
        return int.from_bytes(self.mac("split", pseudonym)[:8], "big") / 2**64

    def date_shift_days(self, pseudonym: str, max_days: int = 365) -> int:
        """A per-patient offset in [-max_days, -1] ∪ [1, max_days] for the date-shifting profile."""
        value = int.from_bytes(self.mac("date-shift", pseudonym)[:4], "big") % (2 * max_days)
        return value - max_days if value < max_days else value - max_days + 1

    def django_secret(self) -> str:
        return base64.urlsafe_b64encode(self._subkeys["django"]).decode("ascii")

    def encrypt(self, plaintext: bytes, context: str, purpose: str = "vault") -> bytes:
        """AES-256-GCM; ``context`` is bound as associated data (e.g. the pseudonym)."""
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._subkeys[purpose]).encrypt(nonce, plaintext, context.encode())

    def decrypt(self, token: bytes, context: str, purpose: str = "vault") -> bytes:
        return AESGCM(self._subkeys[purpose]).decrypt(token[:12], token[12:], context.encode())
