"""Dates leaving the main database for researchers, under the deployment's de-identification profile.

``shift-dates`` moves every DICOM date of a patient by ``Keyring.date_shift_days(pseudonym)``
(``imaging.deid.engine``). The clinical side must move that patient's clinical dates by the
same days, or subtracting one from the other gives the offset back (and so every image's
real date). Every clinical value the warehouse writes (the clinical JSON, the catalogue) passes
through ``DateShift`` here, the one place that decides it. Arrival times (an image's
``received_at``, a record's ``updated_at``) are real times: shifted, they would still bound
the offset, so under ``shift-dates`` they are withheld. Under ``retain-dates`` nothing changes.

Offsets go backward only, so no shifted date is in the future (one there bounds the offset by
its distance from today), except in an installation that shifted dates both ways before that
rule: its patients keep their offsets (the scheme is recorded with the profile,
``deid_profile.date_shift_scheme``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from nccid.identity.keys import SHIFT_BACKWARD

# An ISO date, alone or starting a date-time (``2020-06-05``, ``2020-06-05T10:15:00``).
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?=$|[T ]\d)")
# A date-time's UTC offset (``Z``, ``+01:00``, ``-0500``, ``+01``), after its time's last digit.
_UTC_OFFSET = re.compile(r"(?<=\d)(?:Z|[+-]\d{2}(?::?\d{2})?)$")


class DateShift:
    """How a patient's dates and arrival times are written where researchers read them."""

    def __init__(self, keyring=None, scheme: str = SHIFT_BACKWARD) -> None:
        self._keyring = keyring  # None: the profile keeps dates as they are
        self._scheme = scheme  # the installation's, as the DICOM engine's (deid_profile)

    @property
    def shifts(self) -> bool:
        return self._keyring is not None

    def days(self, pseudonym: str) -> int:
        """The patient's offset: the one de-identification applied to their DICOM dates."""
        return self._keyring.date_shift_days(pseudonym, scheme=self._scheme) if self._keyring else 0

    def clinical(self, pseudonym: str, cleaned: dict) -> dict:
        """A cleaned clinical record with every date (at any depth: a negative sheet's swabs)
        moved by the patient's offset; the record itself is not changed."""
        return shift_values(cleaned, self.days(pseudonym)) if self.shifts else cleaned

    def arrival(self, when: datetime | None) -> datetime | None:
        """An arrival time as researchers see it: withheld when dates are shifted."""
        return None if self.shifts else when


def deployment_shift() -> DateShift:
    """The ``DateShift`` of this deployment's ``deid_profile`` (its ``date_shift`` in
    ``imaging/deid/data/profiles.json``, the same flag the DICOM engine follows) and of the
    installation's recorded shift scheme (the same the engine is given)."""
    from nccid.config import get_settings
    from nccid.identity.service import get_keyring
    from nccid.imaging.deid.profile import load_data

    from .deid_profile import date_shift_scheme

    spec = load_data("profiles.json")[get_settings().deid_profile]
    if not spec.get("date_shift"):
        return DateShift()
    return DateShift(get_keyring(), date_shift_scheme())


def shift_values(value, days: int):
    """``value`` (JSON-like) with every ISO date or date-time string, and every date object,
    moved by ``days`` (times of day kept, a UTC offset dropped as the DICOM side drops it: a
    shifted date's offset tells the season of the real one). A date-like string that is no
    real date becomes None: what cannot be shifted whole is removed, never left as it was."""
    if isinstance(value, dict):
        return {key: shift_values(item, days) for key, item in value.items()}
    if isinstance(value, list):
        return [shift_values(item, days) for item in value]
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) + timedelta(days=days)
    if isinstance(value, date):
        return value + timedelta(days=days)
    if isinstance(value, str):
        return _shift_text(value, days)
    return value


def _shift_text(text: str, days: int) -> str | None:
    match = _ISO_DATE.match(text)
    if match is None:
        return text
    try:
        moved = date(*map(int, match.groups())) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return moved.isoformat() + _UTC_OFFSET.sub("", text[match.end():])
