"""Events the warehouse's rows send; other parts plug in by connecting receivers."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that changed stored image rows in place (``.update()``: their
# patient, study or modality), which no model signal announces: the portal's figures, kept
# incrementally by row ids, count again. kwargs: none required.
images_changed = Signal()
