"""What the database holds of one study, shown before a data manager confirms its removal
(``nccid study remove`` and the portal's *Remove a study*): everything ``remove_study``
deletes, not only the stored images."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudyHoldings:
    study_uid: str
    images: int = 0  # stored
    held: int = 0  # held for review, awaiting a decision
    pending: int = 0  # waiting for a link (named by hospital number only)
    teaching_cases: int = 0
    patients: tuple[str, ...] = ()  # pseudonyms of its stored and held images


def study_holdings(study_uid: str) -> StudyHoldings:
    """What is held of the (stored, keyed) ``study_uid``: counted as ``remove_study`` counts
    what it removed (a held image once its decision emptied its file is a record only)."""
    from nccid.imaging.models import HeldImage, PendingImage
    from nccid.research.models import TeachingCase
    from nccid.warehouse.models import ImageRecord

    images = ImageRecord.objects.filter(study_uid=study_uid)
    held = HeldImage.objects.filter(study_uid=study_uid, file_name__gt="")
    named = (set(images.values_list("pseudonym", flat=True).distinct())
             | set(held.exclude(pseudonym="").values_list("pseudonym", flat=True).distinct()))
    return StudyHoldings(
        study_uid=study_uid,
        images=images.count(),
        held=held.count(),
        pending=PendingImage.objects.filter(study_uid=study_uid).count(),
        teaching_cases=TeachingCase.objects.filter(study_uid=study_uid).count(),
        patients=tuple(sorted(named)),
    )
