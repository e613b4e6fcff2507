"""Training/validation split by patient. Pure library.

A site's rule sends all its patients to one set or splits them by a stable keyed hash of the
pseudonym (``Keyring.split_fraction``) against the validation percentage. The decision is made
once per patient and persisted by the service, so changing the percentage later never moves
anyone already assigned.
"""

from __future__ import annotations

RULES = ("training", "validation", "split")


def choose_set(rule: str, fraction: float, validation_percent: int | float) -> str:
    """``"training"`` or ``"validation"`` for a new patient under a site's ``rule``."""
    if rule not in RULES:
        raise ValueError(f"unknown split rule {rule!r}: expected one of {', '.join(RULES)}")
    if not 0 <= validation_percent <= 100:
        raise ValueError(f"validation percentage must be between 0 and 100, got {validation_percent}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    if rule != "split":
        return rule
    return "validation" if fraction < validation_percent / 100 else "training"
