"""The programme's summary table, computed incrementally from the database.

The figures are counts of distinct patients and studies. Recounting a million image rows on
every page view would not scale, so the counts are kept in a ``FigureState`` row together
with the high-water marks (largest primary keys) of the image and clinical tables they cover.
When new rows arrive, only those rows are examined: a patient or study counts as new when no
earlier row names it (an indexed ``NOT EXISTS``). Deleting rows, or changing image rows in
place (a relink gives them another patient: ``nccid.warehouse.signals.images_changed``),
bumps a generation counter, which forces one full recount. Page views cost one cheap probe
(three indexed ``MAX``/row lookups, memoised for ``PROBE_SECONDS`` in each process) and a
dictionary look-up.

Each site's own patients and studies are counted the same way, alongside. Everyone but data
managers and administrators is shown the national counts rounded (``Summary.rounded``), as
public statistics are: one site's upload must not tell it, by moving a national count by
one, whether another site had sent a patient (docs/decisions.md). Its own site's figures
are exact, so an uploader still sees their upload counted.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

from django.apps import apps
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery

from nccid.modalities import non_image_modalities

from .models import FigureState

PROBE_SECONDS = 1.0
# On PostgreSQL a transaction may commit a row with a smaller id than one already counted;
# a periodic full recount picks such late rows up.
RECOUNT_SECONDS = 3600
GENERATION = "_generation"
SUMMARY = "summary"
# National counts are shown to all but data managers rounded to the nearest ROUND_TO.
ROUND_TO = 5
# The rule of saved counts (a study's column: its image objects' modality); counts saved
# under an earlier rule are counted again.
STUDIES_BY = "image objects"
_DATA = Path(__file__).parent / "data"


@cache
def _modalities() -> dict:
    return json.loads((_DATA / "modalities.json").read_text())


def modality_categories() -> dict[str, str]:
    """DICOM modality code -> summary column (``xray``, ``mri``, ``ct``); others are not listed."""
    return _modalities()["categories"]


def image_objects(rows):
    """``rows`` (image rows) without the objects that are not images."""
    return rows.exclude(modality__in=non_image_modalities())


def image_model():
    return apps.get_model("warehouse", "ImageRecord")


def clinical_model():
    return apps.get_model("clinical", "ClinicalRecord")


@dataclass(frozen=True)
class SiteFigures:
    """One site's own figures (exact): the patients its rows name, its studies with images
    stored (image rows: a study held for review or waiting for a link counts once stored)."""

    patients: int = 0
    studies: int = 0


@dataclass(frozen=True)
class Summary:
    centres: int
    patients_with_images: int
    total_patients: int
    studies_xray: int
    studies_mri: int
    studies_ct: int
    studies_other: int
    images: int
    version: tuple[int, int, int]
    by_site: tuple[tuple[int, SiteFigures], ...] = ()  # (site id, its figures); never published
    rounded_to: int = 1

    def rows(self) -> list[tuple[str, int]]:
        """The published table, in the programme's order and wording."""
        return [
            ("Number of centres with data", self.centres),
            ("Patients with images", self.patients_with_images),
            ("Total patients (studies + clinical data)", self.total_patients),
            ("Studies received (X-ray)", self.studies_xray),
            ("Studies received (MRI)", self.studies_mri),
            ("Studies received (CT)", self.studies_ct),
        ]

    def rounded(self) -> Summary:
        """The figures as all but data managers see them: every count one site's upload could
        move by another site's patient or study rounded to the nearest ``ROUND_TO`` (the
        centres only a site's own first upload moves); no site's own figures."""
        return replace(self, by_site=(), rounded_to=ROUND_TO,
                       **{name: _round(getattr(self, name)) for name in ROUNDED})

    def site(self, site_id: int | None) -> SiteFigures:
        """The site's own figures (none yet, or no site: zeros)."""
        return dict(self.by_site).get(site_id, SiteFigures())

    def as_dict(self) -> dict:
        data = asdict(self)
        data["version"] = list(self.version)
        del data["by_site"]
        return data


ROUNDED = ("patients_with_images", "total_patients", "studies_xray", "studies_mri", "studies_ct",
           "studies_other", "images")


def _round(count: int) -> int:
    return (count + ROUND_TO // 2) // ROUND_TO * ROUND_TO


# ---------------------------------------------------------------- the data version probe

def data_version() -> tuple[int, int, int]:
    """(largest image id, largest clinical id, deletion generation): changes whenever the data do."""
    image_top = image_model().objects.aggregate(m=Max("pk"))["m"] or 0
    clinical_top = clinical_model().objects.aggregate(m=Max("pk"))["m"] or 0
    generation = (
        FigureState.objects.filter(name=GENERATION).values_list("generation", flat=True).first() or 0
    )
    return image_top, clinical_top, generation


_memo_lock = threading.Lock()
_memo: dict[str, object] = {"at": 0.0, "version": None, "summary": None}


def bump_generation(**_kwargs) -> None:
    """Force a full recount (rows were deleted, or image rows changed in place). Connected to
    the models' post_delete and to ``images_changed``."""
    updated = FigureState.objects.filter(name=GENERATION).update(generation=F("generation") + 1)
    if not updated:
        try:
            with transaction.atomic():
                FigureState.objects.create(name=GENERATION, generation=1)
        except IntegrityError:  # created meanwhile by another process
            FigureState.objects.filter(name=GENERATION).update(generation=F("generation") + 1)
    forget()


def connect_signals() -> None:
    """Deleting image or clinical rows, or changing image rows in place, forces a recount
    (called from the app's ready())."""
    from django.db.models.signals import post_delete

    from nccid.warehouse.signals import images_changed

    for label in ("warehouse.ImageRecord", "clinical.ClinicalRecord"):
        post_delete.connect(bump_generation, sender=label, dispatch_uid=f"figures-{label}")
    images_changed.connect(bump_generation, dispatch_uid="figures-images-changed")


def forget() -> None:
    """Drop this process's memo (tests, and after a deletion)."""
    with _memo_lock:
        _memo.update(at=0.0, version=None, summary=None)


def get_summary(max_age: float = PROBE_SECONDS) -> Summary:
    """The current summary; at most one probe per ``max_age`` seconds in this process."""
    now = time.monotonic()
    with _memo_lock:
        if _memo["summary"] is not None and now - _memo["at"] < max_age:
            return _memo["summary"]  # type: ignore[return-value]
    version = data_version()
    with _memo_lock:
        if _memo["version"] == version and _memo["summary"] is not None:
            _memo["at"] = now
            return _memo["summary"]  # type: ignore[return-value]
    summary = _bring_up_to(version)
    with _memo_lock:
        _memo.update(at=now, version=version, summary=summary)
    return summary


def summary_for(user) -> tuple[Summary, SiteFigures | None]:
    """The summary as ``user`` may see it: exact for data managers and administrators; for
    everyone else rounded, with an uploader's own site's figures (exact)."""
    figures = get_summary()
    if user.is_data_manager:
        return figures, None
    return figures.rounded(), figures.site(user.site_id) if user.is_uploader else None


# ---------------------------------------------------------------- incremental computation

def _empty_counts() -> dict:
    return {"counted_at": 0, "centres": [], "patients_with_images": 0, "total_patients": 0, "images": 0,
            "studies": {"xray": 0, "mri": 0, "ct": 0, "other": 0}, "sites": {},
            "studies_by": STUDIES_BY}


def _bring_up_to(version: tuple[int, int, int]) -> Summary:
    image_top, clinical_top, generation = version
    state = FigureState.objects.filter(name=SUMMARY).first()
    now = time.time()
    if state is None or state.generation != generation or state.image_hwm > image_top \
            or state.clinical_hwm > clinical_top \
            or now - state.data.get("counted_at", 0) > RECOUNT_SECONDS \
            or "sites" not in state.data \
            or state.data.get("studies_by") != STUDIES_BY:  # saved under another rule
        counts, image_hwm, clinical_hwm, full = _empty_counts(), 0, 0, True
    else:
        counts, image_hwm, clinical_hwm, full = state.data, state.image_hwm, state.clinical_hwm, False
    if full or (image_hwm, clinical_hwm) != (image_top, clinical_top):
        counts = _add_rows(counts, image_hwm, image_top, clinical_hwm, clinical_top)
        if full:
            counts["counted_at"] = now
        _save(state, counts, image_top, clinical_top, generation)
    return _as_summary(counts, version)


def _add_rows(counts: dict, image_lo: int, image_hi: int, clinical_lo: int, clinical_hi: int) -> dict:
    """Counts after adding image rows (image_lo, image_hi] and clinical rows (clinical_lo, clinical_hi]."""
    Image, Clinical = image_model(), clinical_model()
    counts = json.loads(json.dumps(counts))  # never mutate a cached state
    new_images = Image.objects.filter(pk__gt=image_lo, pk__lte=image_hi)
    new_clinical = Clinical.objects.filter(pk__gt=clinical_lo, pk__lte=clinical_hi)

    def earlier(model, upto: int, field: str):
        return model.objects.filter(pk__lte=upto, **{field: OuterRef(field)})

    counts["images"] += new_images.count()
    # Patients with images: pseudonyms of new rows that no earlier image row names.
    first_images = new_images.filter(~Exists(earlier(Image, image_lo, "pseudonym")))
    counts["patients_with_images"] += first_images.values("pseudonym").distinct().count()
    # All patients: new image pseudonyms also unknown to the old clinical rows, then new clinical
    # pseudonyms unknown to every image row so far and to the old clinical rows.
    counts["total_patients"] += (
        first_images.filter(~Exists(earlier(Clinical, clinical_lo, "pseudonym")))
        .values("pseudonym").distinct().count()
    )
    counts["total_patients"] += (
        new_clinical.filter(~Exists(earlier(Image, image_hi, "pseudonym")),
                            ~Exists(earlier(Clinical, clinical_lo, "pseudonym")))
        .values("pseudonym").distinct().count()
    )
    _add_studies(counts["studies"], new_images, image_lo, image_hi)
    sites = set(counts["centres"])
    sites.update(new_images.values_list("site_id", flat=True).distinct())
    sites.update(new_clinical.values_list("site_id", flat=True).distinct())
    counts["centres"] = sorted(sites)
    _add_site_figures(counts["sites"], new_images, new_clinical, image_lo, image_hi, clinical_lo)
    return counts


def _add_studies(studies: dict, new_images, image_lo: int, image_hi: int) -> None:
    """Each study counted once, in the category of its deciding row's modality: its first image
    object (a study whose images say CR and DX, or CT then MR, is one study), or, while it has
    none, its first object (a presentation state, a report...). New deciding rows are added;
    a study that had only such objects and gains its first image moves to the image's column."""
    Image = image_model()
    categories = modality_categories()
    same_study = Image.objects.filter(study_uid=OuterRef("study_uid"))
    earlier = same_study.filter(pk__lt=OuterRef("pk"))
    # First image objects: the first rows of their study, or (rarely; the index alone cannot
    # tell) of a study with other objects, the first of its images.
    with_other_objects = Image.objects.filter(modality__in=non_image_modalities(),
                                              pk__lte=image_hi).values("study_uid")
    first_image = image_objects(new_images).filter(
        ~Exists(earlier) | Q(~Exists(image_objects(earlier)), study_uid__in=with_other_objects))
    first_of_no_image = new_images.filter(modality__in=non_image_modalities()).filter(
        ~Exists(earlier), ~Exists(image_objects(same_study.filter(pk__lte=image_hi))))
    # Studies whose earlier rows (all objects that are not images) decided until now.
    old_first = same_study.filter(pk__lte=image_lo).order_by("pk").values("modality")[:1]
    superseded = (first_image.filter(Exists(same_study.filter(pk__lte=image_lo)),
                                     study_uid__in=with_other_objects)
                  .annotate(old=Subquery(old_first)))
    added = [(first_image, "modality", 1), (first_of_no_image, "modality", 1)]
    for query, field, sign in added + ([(superseded, "old", -1)] if image_lo else []):
        for row in query.order_by().values(field).annotate(n=Count("pk")):
            studies[categories.get((row[field] or "").upper(), "other")] += sign * row["n"]


def _add_site_figures(sites: dict, new_images, new_clinical, image_lo: int, image_hi: int,
                      clinical_lo: int) -> None:
    """Each site's own patients and studies, counted as the national ones are with "earlier"
    meaning an earlier row of the same site (indexed: pseudonym, study; clinical by site)."""
    Image, Clinical = image_model(), clinical_model()

    def earlier(model, upto: int, field: str):
        return model.objects.filter(pk__lte=upto, site_id=OuterRef("site_id"),
                                    **{field: OuterRef(field)})

    first_images = new_images.filter(~Exists(earlier(Image, image_lo, "pseudonym")),
                                     ~Exists(earlier(Clinical, clinical_lo, "pseudonym")))
    first_clinical = new_clinical.filter(~Exists(earlier(Image, image_hi, "pseudonym")),
                                         ~Exists(earlier(Clinical, clinical_lo, "pseudonym")))
    preceded = Image.objects.filter(site_id=OuterRef("site_id"), study_uid=OuterRef("study_uid"),
                                    pk__lt=OuterRef("pk"))
    added = [(first_images, "patients", Count("pseudonym", distinct=True)),
             (first_clinical, "patients", Count("pseudonym", distinct=True)),
             (new_images.filter(~Exists(preceded)), "studies", Count("pk"))]
    for query, figure, count in added:
        for site_id, n in query.order_by().values("site_id").annotate(n=count).values_list("site_id", "n"):
            site = sites.setdefault(str(site_id), {"patients": 0, "studies": 0})
            site[figure] += n


def _save(state: FigureState | None, counts: dict, image_top: int, clinical_top: int,
          generation: int) -> None:
    """Save unless another process has saved a newer state meanwhile (optimistic update)."""
    fields = {"data": counts, "image_hwm": image_top, "clinical_hwm": clinical_top,
              "generation": generation}
    if state is None:
        try:
            with transaction.atomic():
                FigureState.objects.create(name=SUMMARY, **fields)
        except IntegrityError:
            pass  # another process created it: its figures are as good as ours
        return
    FigureState.objects.filter(
        Q(image_hwm__lte=image_top, clinical_hwm__lte=clinical_top) | ~Q(generation=generation),
        name=SUMMARY,
    ).update(**fields)


def _as_summary(counts: dict, version: tuple[int, int, int]) -> Summary:
    studies = counts["studies"]
    return Summary(
        centres=len(counts["centres"]),
        patients_with_images=counts["patients_with_images"],
        total_patients=counts["total_patients"],
        studies_xray=studies["xray"], studies_mri=studies["mri"], studies_ct=studies["ct"],
        studies_other=studies["other"], images=counts["images"], version=version,
        by_site=tuple((int(site_id), SiteFigures(**figures))
                      for site_id, figures in sorted(counts["sites"].items(), key=lambda i: int(i[0]))),
    )


def recount() -> Summary:
    """The summary counted from scratch (the incremental result must always equal it)."""
    image_top, clinical_top, generation = data_version()
    counts = _add_rows(_empty_counts(), 0, image_top, 0, clinical_top)
    return _as_summary(counts, (image_top, clinical_top, generation))
