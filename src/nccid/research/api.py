"""JSON API for researchers (mounted at /api/research/ by the portal): cohort counts, lists and
zip exports. Bearer token (``nccid user token``) or a logged-in session; training set only."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.http import FileResponse
from ninja import P, Query, Router, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer, django_auth

from .cohort import CohortError, CohortFilter, ScopeError, select_cohort
from .export import ExportError, export_cohort
from .source import Source, default_source


class TokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        from django.utils import timezone

        from nccid.accounts.models import ApiToken

        found = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(token)).first()
        if found is None or not found.user.is_active:
            return None
        ApiToken.objects.filter(pk=found.pk).update(last_used=timezone.now())
        return found.user


router = Router(auth=[TokenAuth(), django_auth], tags=["research"])
# Tests point this at their own catalogue; production reads the installation's.
source_factory = default_source


class FilterIn(Schema):
    covid_status: list[str] = []
    modality: list[str] = []
    site: list[str] = []
    study_date_from: str | None = None
    study_date_to: str | None = None
    age_min: int | None = None
    age_max: int | None = None
    sex: list[str] = []
    ethnicity: list[str] = []
    clinical: list[str] = []
    within: dict[str, Any] | None = None


class CountsOut(Schema):
    patients: int
    studies: int
    images: int


def _user(request):
    user = request.auth
    return user if getattr(user, "is_authenticated", False) else request.user


def _cohort(request, body: FilterIn, source: Source):
    try:
        return select_cohort(_user(request), CohortFilter.from_dict(body.dict()), source)
    except ScopeError as exc:
        raise HttpError(403, str(exc)) from exc
    except CohortError as exc:
        raise HttpError(400, str(exc)) from exc


@router.post("/cohort/count", response=CountsOut, summary="Count the patients, studies and images of a cohort")
def cohort_count(request, body: FilterIn):
    """Patients, studies and images matching the filter (the user's sets only)."""
    return _cohort(request, body, source_factory()).counts().as_dict()


@router.post("/cohort/list", summary="A cohort's counts and a page of its images")
def cohort_list(request, body: FilterIn,
                limit: Query[int, P(description="Images in this page (1-10000).")] = 100,
                offset: Query[int, P(description="Images skipped before this page.")] = 0):
    """Counts, then a page of the matching images."""
    if not 0 < limit <= 10_000 or offset < 0:
        raise HttpError(400, "limit must be 1-10000 and offset not negative")
    cohort = _cohort(request, body, source_factory())
    rows = cohort.images(limit=limit, offset=offset)
    return {"counts": cohort.counts().as_dict(), "limit": limit, "offset": offset,
            "images": rows.astype(object).where(rows.notna(), None).to_dict(orient="records")}


@router.post("/export", summary="Export a cohort as a zip (tables, DICOM, manifest with checksums)")
def export_zip(request, body: FilterIn,
               formats: Query[str, P(description="Comma-separated: parquet, csv and dicom (the images in the bucket layout).")] = "parquet,csv,dicom"):
    """The cohort as a zip (tables, DICOM in the bucket layout, manifest.csv)."""
    folder = Path(tempfile.mkdtemp(prefix="nccid-export-"))
    path = folder / "cohort.zip"
    try:
        export_cohort(_user(request), CohortFilter.from_dict(body.dict()), path, formats,
                      source_factory())
    except ScopeError as exc:
        raise HttpError(403, str(exc)) from exc
    except (CohortError, ExportError) as exc:
        raise HttpError(400, str(exc)) from exc
    handle = path.open("rb")
    path.unlink()  # the open handle keeps the data until the response is sent
    folder.rmdir()
    return FileResponse(handle, as_attachment=True, filename="cohort.zip",
                        content_type="application/zip")


@router.get("/withdrawn", summary="Patients withdrawn and studies removed: delete them from your copies")
def withdrawn(request, since: Query[str | None, P(description="Only withdrawals and removals on or after this date (YYYY-MM-DD).")] = None):
    """Patients withdrawn and studies removed (on or after ``since``, YYYY-MM-DD) from your
    sets: delete them from copies made earlier. Pseudonyms and de-identified UIDs only."""
    from nccid.withdrawal.services import WithdrawalError, parse_since, withdrawn_for

    try:
        return withdrawn_for(_user(request), parse_since(since))
    except WithdrawalError as exc:
        raise HttpError(400, str(exc)) from exc
    except ScopeError as exc:
        raise HttpError(403, str(exc)) from exc
