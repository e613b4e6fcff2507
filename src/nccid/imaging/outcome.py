"""The result of taking in one DICOM file, whatever its source (node, folder, portal)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class IngestStatus(StrEnum):
    STORED = "stored"          # de-identified and in the warehouse
    DUPLICATE = "duplicate"    # already stored: nothing written
    PENDING = "pending"        # waits, encrypted, for the clinical record that names its patient
    HELD = "held"              # burned-in text suspected: held for review, not in the warehouse
    REJECTED = "rejected"      # not usable DICOM: reason says why


@dataclass(frozen=True)
class IngestOutcome:
    status: IngestStatus
    reason: str = ""
    sop_uid: str = ""  # de-identified SOP Instance UID, when known
    # REJECTED for an internal error that is an outage (a database or store that does not
    # answer): the setting to check, in one line. The file is not at fault: sent again later,
    # it goes in.
    outage: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not IngestStatus.REJECTED
