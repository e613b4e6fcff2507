"""Teaching collections: cases (studies) marked by data managers, with a note each."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TeachingCollection(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="teaching_collections")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeachingCase(models.Model):
    """One study of one (pseudonymised) patient; the note is what the trainer reads."""

    collection = models.ForeignKey(TeachingCollection, on_delete=models.CASCADE, related_name="cases")
    pseudonym = models.CharField(max_length=32)
    study_uid = models.CharField(max_length=64)
    note = models.TextField(blank=True)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="+")
    added = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["collection", "added", "id"]
        constraints = [models.UniqueConstraint(fields=["collection", "study_uid"],
                                               name="teaching_case_once_per_collection")]
