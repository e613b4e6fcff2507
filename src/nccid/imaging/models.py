"""Images waiting at intake, and what each site has sent.

Nothing here identifies a patient: UIDs are the de-identified (keyed) ones, patients are named
by pseudonym or by the site-scoped keyed hash of their hospital number. The waiting images
themselves are files under ``settings.pending_dir``, de-identified and encrypted.
"""

from __future__ import annotations

from django.db import models

from nccid.accounts.models import Site


class PendingImage(models.Model):
    """A de-identified image whose patient has no clinical record yet (waits to be linked)."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="pending_images")
    hospital_hash = models.CharField(max_length=32, db_index=True)
    sop_uid = models.CharField(max_length=64, unique=True)
    study_uid = models.CharField(max_length=64)
    file_name = models.CharField(max_length=128)  # under settings.pending_dir
    size = models.BigIntegerField()
    source = models.CharField(max_length=16)
    received_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    # Set while a linker finalises the image, so two linkers never both take it; by whom
    # (``nccid.processes.this_process()``: host.pid), so that a claim of a process known dead is taken
    # at once (``linking._claimable``). Indexed: the claims held are looked up at each pass.
    claimed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_by = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["site", "hospital_hash"])]


class HeldStatus(models.TextChoices):
    HELD = "held", "Held for review"
    RELEASED = "released", "Released"
    REJECTED = "rejected", "Rejected"


class HeldImage(models.Model):
    """A de-identified image suspected of burned-in text: a data manager decides its fate."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="held_images")
    pseudonym = models.CharField(max_length=32, blank=True)
    hospital_hash = models.CharField(max_length=32, blank=True)
    sop_uid = models.CharField(max_length=64, unique=True)
    study_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    reason = models.CharField(max_length=200)
    file_name = models.CharField(max_length=128, blank=True)  # emptied once decided
    size = models.BigIntegerField()
    source = models.CharField(max_length=16)
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=HeldStatus.choices, default=HeldStatus.HELD)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["received_at"]


class ReceiptStatus(models.TextChoices):
    STORED = "stored", "Stored"
    WAITING = "waiting", "Waiting for clinical record"
    PENDING = "pending", "Pending link"
    HELD = "held", "Held for review"
    REJECTED = "rejected", "Refused"


class StudyReceipt(models.Model):
    """What a site sent, one row per de-identified study: the site's view of its uploads."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="study_receipts")
    study_uid = models.CharField(max_length=64)
    patient = models.CharField(max_length=32)  # pseudonym, or hospital hash until linked
    modality = models.CharField(max_length=16, blank=True)
    source = models.CharField(max_length=16)
    instances = models.IntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    stored = models.IntegerField(default=0)
    pending = models.IntegerField(default=0)
    held = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)  # files refused after they were received
    problem = models.CharField(max_length=200, blank=True)  # the latest refusal's reason
    has_clinical = models.BooleanField(default=False)
    first_received = models.DateTimeField()
    last_received = models.DateTimeField()
    status = models.CharField(max_length=16, choices=ReceiptStatus.choices)

    class Meta:
        ordering = ["-last_received"]
        constraints = [
            models.UniqueConstraint(fields=["site", "study_uid"], name="imaging_receipt_site_study")
        ]
        # My uploads: a site's studies newest first, all or of one status, a page at a time
        indexes = [
            models.Index(fields=["site", "-last_received"], name="imaging_receipt_site_recent"),
            models.Index(fields=["site", "status", "-last_received"],
                         name="imaging_receipt_site_status"),
        ]

    def derive_status(self) -> str:
        if self.held:
            return ReceiptStatus.HELD
        if self.pending:
            return ReceiptStatus.PENDING
        if self.rejected and not self.stored:
            return ReceiptStatus.REJECTED
        return ReceiptStatus.STORED if self.has_clinical else ReceiptStatus.WAITING


class RefusedInstance(models.Model):
    """An instance counted as refused (or deleted) in its study's receipt, by its keyed SOP
    Instance UID (never the original): sent again, it is not counted twice; stored, pending
    or held later, its refusal is taken back, so a receipt counts distinct instances."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    study_uid = models.CharField(max_length=64)  # the receipt it is counted in
    sop_uid = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "sop_uid"], name="imaging_refused_site_sop")
        ]


class PendingFolderMark(models.Model):
    """The waiting images' folder as last marked (one row): the token its marker file holds and
    the path it was configured as. A folder at that path whose marker lacks the token is not
    theirs (an unmounted disk's bare mount point), even when no image waits."""

    token = models.CharField(max_length=64)
    path = models.TextField()  # settings.pending_dir when it was marked
    marked_at = models.DateTimeField()
