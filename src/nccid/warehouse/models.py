"""Warehouse models: each patient's set (decided once, remembered through a withdrawal) and
one row per stored image.

Only pseudonyms and de-identified UIDs are stored here, never an identifier.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class WarehouseSet(models.TextChoices):
    TRAINING = "training", "Training"
    VALIDATION = "validation", "Validation"


class PatientSet(models.Model):
    """The set a patient was put in the first time the warehouse saw them. Never changes."""

    pseudonym = models.CharField(max_length=32, unique=True)
    set_name = models.CharField(max_length=16, choices=WarehouseSet.choices)
    site = models.ForeignKey("accounts.Site", on_delete=models.PROTECT, related_name="+",
                             help_text="The site whose rule decided the set")
    assigned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["set_name"])]

    def __str__(self) -> str:
        return f"{self.pseudonym} -> {self.set_name}"


class KeptSet(models.Model):
    """The set of a patient whose ``PatientSet`` a withdrawal removed: a reinstated patient who
    is sent again goes back to it (one set per patient, for good). The pseudonym is a keyed
    hash, and nothing else of the patient is kept here."""

    pseudonym = models.CharField(max_length=32, unique=True)
    set_name = models.CharField(max_length=16, choices=WarehouseSet.choices)
    # The site whose rule decided the set (empty if that site is gone, or not recorded).
    site = models.ForeignKey("accounts.Site", on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    assigned_at = models.DateTimeField(null=True, blank=True)
    kept_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.pseudonym} -> {self.set_name} (kept)"


class ImageRecord(models.Model):
    """One stored, de-identified image: every column of the catalogue's ``images`` view."""

    sop_uid = models.CharField(max_length=64, unique=True)
    study_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    pseudonym = models.CharField(max_length=32)
    site = models.ForeignKey("accounts.Site", on_delete=models.PROTECT, related_name="images")
    set_name = models.CharField(max_length=16, choices=WarehouseSet.choices)
    modality = models.CharField(max_length=16, blank=True)
    folder = models.CharField(max_length=32)
    transfer_syntax = models.CharField(max_length=64, blank=True)
    study_date = models.DateField(null=True, blank=True)
    series_date = models.DateField(null=True, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    manufacturer = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=64, blank=True)
    rows = models.IntegerField(null=True, blank=True)
    columns = models.IntegerField(null=True, blank=True)
    pixel_spacing = models.CharField(max_length=64, blank=True)
    view_position = models.CharField(max_length=16, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    patient_age = models.IntegerField(null=True, blank=True, help_text="Whole years")
    storage_key = models.CharField(max_length=400)
    metadata_key = models.CharField(max_length=400)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now)
    # The patient has a clinical record (set when the record arrives if the image came first).
    linked = models.BooleanField(default=True)
    # The site-scoped keyed hash of the hospital number that links the image to its patient
    # (the site's link, or a waiting image's Patient ID); "" when an NHS/CHI number named it;
    # NULL when stored before this was recorded. ``nccid patient relink`` moves by it.
    hospital_hash = models.CharField(max_length=32, null=True, blank=True, default=None)
    # Catalogue part holding this row (NULL until the next refresh claims it): the database,
    # not a timestamp watermark, says what is catalogued, so late commits are never skipped.
    catalogue_part = models.IntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["pseudonym"]),
            models.Index(fields=["study_uid"]),
            models.Index(fields=["site", "modality"]),
            models.Index(fields=["set_name", "modality"]),
            models.Index(fields=["received_at"]),
            models.Index(fields=["catalogue_part"]),
            models.Index(fields=["site", "hospital_hash"]),
        ]

    def __str__(self) -> str:
        return f"{self.modality} {self.storage_key}"


class DeidProfileRecord(models.Model):
    """The ``deid_profile`` the installation's data were de-identified under (one row,
    ``nccid.warehouse.deid_profile``): once data exist, another one is refused."""

    profile = models.CharField(max_length=32)
    recorded_at = models.DateTimeField(default=timezone.now)
    how = models.CharField(max_length=64)  # e.g. "set while no data were stored"
    # How offsets are drawn (keys.SHIFT_BACKWARD or SHIFT_BOTH_WAYS); "" in a row of a release
    # before the choice, decided at the next check (deid_profile.check_deid_profile).
    date_shift = models.CharField(max_length=16, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.profile} ({self.how})"
