"""Clinical uploads and records. Pseudonyms and keyed hashes only: no identifier is stored.

An ``Upload`` is one submitted sheet (never its filename: names of files can carry a patient's
name). A ``ClinicalRecord`` is the current record of one patient at one site for one template
kind; each accepted upload that creates or changes it adds a ``ClinicalRecordVersion``.
``PatientLink`` maps a site-scoped hospital-number hash to a pseudonym, so images that carry
only a hospital number can be linked.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from nccid.accounts.models import Site

KIND_CHOICES = [("positive", "Positive (v1.5)"), ("negative", "Negative (v1.0)"), ("isaric", "ISARIC (v1.0)")]


class Upload(models.Model):
    class Status(models.TextChoices):
        PREVIEW = "preview", "Checked, waiting for confirmation"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="clinical_uploads")
    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    template_version = models.CharField(max_length=16, blank=True)
    file_format = models.CharField(max_length=8, blank=True)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PREVIEW, db_index=True)
    message = models.TextField(blank=True)  # why a whole file was refused, in plain English
    total_rows = models.PositiveIntegerField(default=0)
    accepted_rows = models.PositiveIntegerField(default=0)
    rejected_rows = models.PositiveIntegerField(default=0)
    new_records = models.PositiveIntegerField(default=0)
    updated_records = models.PositiveIntegerField(default=0)
    unchanged_records = models.PositiveIntegerField(default=0)
    # [{row, column, value, reason, severity, message}]; value is blank for identifier columns
    errors = models.JSONField(default=list, blank=True)
    sheet_warnings = models.JSONField(default=list, blank=True)
    # The problems beyond those kept in ``errors`` (validation.ProblemList), only counted:
    # [{column, severity, count}]
    omitted_problems = models.JSONField(default=list, blank=True)
    # Pseudonymised validated records and vault ciphertexts, until confirmed or cancelled.
    staged = models.JSONField(null=True, blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="clinical_uploads")
    uploaded_by_name = models.CharField(max_length=150, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"upload {self.pk} ({self.site.code}, {self.kind}, {self.status})"

    @property
    def error_count(self) -> int:
        """Every error found, those only counted too."""
        return (sum(1 for e in self.errors if e.get("severity", "error") == "error")
                + self._omitted("error"))

    @property
    def warning_count(self) -> int:
        return sum(1 for e in self.errors if e.get("severity") == "warning") + self._omitted("warning")

    @property
    def omitted_count(self) -> int:
        return sum(o.get("count", 0) for o in self.omitted_problems or [])

    def _omitted(self, severity: str) -> int:
        return sum(o.get("count", 0) for o in self.omitted_problems or [] if o.get("severity") == severity)


class ClinicalRecord(models.Model):
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="clinical_records")
    pseudonym = models.CharField(max_length=32, db_index=True)
    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    hospital_hash = models.CharField(max_length=32, blank=True)
    data = models.JSONField(default=dict)  # typed values by field, as the site sent them
    cleaned = models.JSONField(default=dict)  # the research view (see docs/architecture.md)
    flags = models.JSONField(default=list, blank=True)  # fields kept raw but cleaned to None
    digest = models.CharField(max_length=64)  # of data + cleaned + flags: detects unchanged rows
    last_upload = models.ForeignKey(Upload, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, db_index=True)
    # Its JSON in the warehouse is not yet known to match ``digest``: set when the record is
    # created or changed, cleared by the writer once written (docs/warehouse.md).
    json_owed = models.BooleanField(db_default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "pseudonym", "kind"], name="clinical_one_record")]
        indexes = [models.Index(fields=["id"], condition=models.Q(json_owed=True), name="clinical_json_owed")]

    def __str__(self) -> str:
        return f"{self.kind} record {self.pseudonym} at {self.site.code}"


class ClinicalRecordVersion(models.Model):
    """An earlier state of a record, as ``upload`` made it, kept when ``superseded_by`` changed it.

    With the record's current state (made by ``last_upload``) this is the full history: every
    upload that created or changed the record, in order. Unchanged re-uploads add nothing.
    """

    record = models.ForeignKey(ClinicalRecord, on_delete=models.CASCADE, related_name="versions")
    upload = models.ForeignKey(Upload, on_delete=models.PROTECT, related_name="record_versions")
    superseded_by = models.ForeignKey(Upload, on_delete=models.PROTECT, related_name="superseded_versions")
    data = models.JSONField(default=dict)
    cleaned = models.JSONField(default=dict)
    flags = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["record_id", "id"]


class PatientLink(models.Model):
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="patient_links")
    hospital_hash = models.CharField(max_length=32)
    pseudonym = models.CharField(max_length=32, db_index=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "hospital_hash"], name="clinical_one_link")]


def history(record: ClinicalRecord) -> list[dict]:
    """Every state of a record, oldest first: ``{upload_id, data, cleaned, flags}``."""
    states = [{"upload_id": v.upload_id, "data": v.data, "cleaned": v.cleaned, "flags": v.flags}
              for v in record.versions.order_by("id")]
    states.append({"upload_id": record.last_upload_id, "data": record.data, "cleaned": record.cleaned,
                   "flags": record.flags})
    return states
