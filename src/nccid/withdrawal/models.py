"""The withdrawal list: one row per withdrawn patient, by pseudonym (never an identifier)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Withdrawal(models.Model):
    """A patient withdrawn from the database. While the row exists, intake refuses the patient."""

    pseudonym = models.CharField(max_length=32, unique=True)
    requested_at = models.DateTimeField(default=timezone.now)
    requested_by = models.CharField(max_length=150)
    reason = models.TextField()
    # Set once everything of the patient is removed; empty while a withdrawal is interrupted.
    completed_at = models.DateTimeField(null=True, blank=True)
    removed = models.JSONField(default=dict, blank=True)  # what was removed, as counts

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"{self.pseudonym} withdrawn {self.requested_at:%Y-%m-%d}"


class StudyWithdrawal(models.Model):
    """A study removed from the database (by its de-identified UID); intake refuses it from then on."""

    study_uid = models.CharField(max_length=64, unique=True)
    requested_at = models.DateTimeField(default=timezone.now)
    requested_by = models.CharField(max_length=150)
    reason = models.TextField()
    completed_at = models.DateTimeField(null=True, blank=True)
    removed = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"study {self.study_uid} removed {self.requested_at:%Y-%m-%d}"


class ReinstatedWithdrawal(models.Model):
    """A withdrawal taken back (the patient is no longer on the list). Kept so researchers
    still learn that the patient left their set: their copies may hold data of the withdrawn
    patient, or of another person sent under the patient's number."""

    pseudonym = models.CharField(max_length=32, db_index=True)  # not unique: withdrawn again
    requested_at = models.DateTimeField()  # when the patient was withdrawn
    reinstated_at = models.DateTimeField(default=timezone.now)
    reinstated_by = models.CharField(max_length=150)
    removed = models.JSONField(default=dict, blank=True)  # the withdrawal's counts and set

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"{self.pseudonym} withdrawn {self.requested_at:%Y-%m-%d}, reinstated"


class Relink(models.Model):
    """A site's hospital number moved from one patient to another (``nccid patient relink``):
    a sheet gave it a wrong, valid NHS/CHI number. Kept as the record of the repair; while
    ``completed_at`` is empty the move of its images is unfinished and running the command
    again finishes it."""

    site = models.ForeignKey("accounts.Site", on_delete=models.PROTECT, related_name="+")
    hospital_hash = models.CharField(max_length=32)  # keyed, site-scoped: never the number
    old_pseudonym = models.CharField(max_length=32)
    new_pseudonym = models.CharField(max_length=32)
    requested_at = models.DateTimeField(default=timezone.now)
    requested_by = models.CharField(max_length=150)
    reason = models.TextField()
    completed_at = models.DateTimeField(null=True, blank=True)
    moved = models.JSONField(default=dict, blank=True)  # counts

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"relink at {self.site_id}: {self.old_pseudonym} -> {self.new_pseudonym}"


class RelinkedImage(models.Model):
    """One stored image a relink moves, planned when it starts: where its objects were, so a
    run killed between moving the row and deleting the old objects still finds them."""

    relink = models.ForeignKey(Relink, on_delete=models.CASCADE, related_name="images")
    sop_uid = models.CharField(max_length=64)
    old_storage_key = models.CharField(max_length=400)
    old_metadata_key = models.CharField(max_length=400)
    done = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["relink", "sop_uid"],
                                               name="withdrawal_relinked_image_once")]
