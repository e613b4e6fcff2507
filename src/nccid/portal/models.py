"""Models of the portal: the saved state of the incrementally computed figures."""

from __future__ import annotations

from django.db import models


class FigureState(models.Model):
    """Figures computed up to a high-water mark of the image and clinical tables.

    Shared by every worker process, so figures are computed once per change of the data and
    only from the rows added since (see ``nccid.portal.summary``).
    """

    name = models.CharField(max_length=32, unique=True)
    image_hwm = models.BigIntegerField(default=0)
    clinical_hwm = models.BigIntegerField(default=0)
    # Bumped when rows are deleted or clinical records change in place: forces a recount.
    generation = models.BigIntegerField(default=0)
    data = models.JSONField(default=dict)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ images {self.image_hwm}, clinical {self.clinical_hwm}"
