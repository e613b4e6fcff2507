"""Events the clinical part sends; other parts plug in by connecting receivers."""

from __future__ import annotations

from dataclasses import dataclass

from django.dispatch import Signal


@dataclass(frozen=True)
class AcceptedRecord:
    pseudonym: str
    hospital_hash: str | None
    kind: str  # positive | negative | isaric
    cleaned: dict
    digest: str = ""  # the record's, as accepted: its writer marks that JSON written


# Sent after the transaction that accepted an upload commits.
# kwargs: site (accounts.Site), records (list[AcceptedRecord]), upload_id (int)
records_accepted = Signal()
