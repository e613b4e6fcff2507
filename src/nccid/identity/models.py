"""The key vault: each pseudonym's NHS/CHI number, AES-GCM encrypted, in its own database."""

from django.db import models


class VaultEntry(models.Model):
    pseudonym = models.CharField(max_length=32, unique=True)
    # nonce + AES-256-GCM ciphertext of the normalised number, the pseudonym bound as AAD.
    ciphertext = models.BinaryField()
    key_fingerprint = models.CharField(max_length=16)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "vault entries"


class KeyCheck(models.Model):
    """The fingerprint of the key this installation was created with (detects a wrong key)."""

    fingerprint = models.CharField(max_length=16)
    created = models.DateTimeField(auto_now_add=True)
