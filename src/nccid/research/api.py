"""JSON API for researchers (mounted at /api/research/ by the portal): cohort counts, lists and
zip exports. Bearer token (``nccid user token``) or a logged-in session; training set only."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.http import FileResponse
from ninja import P, Query, Router, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer, django_auth

from .cohort import CohortError, CohortFilter, ScopeError, scope_for, select_cohort
from .export import ExportError, export_cohort, parse_formats
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


MAX_LIMIT = 10_000
MAX_OFFSET = 2**31 - 1  # beyond any catalogue; a bigger number would overflow the query


@router.post("/cohort/list", summary="A cohort's counts and a page of its images")
def cohort_list(request, body: FilterIn,
                limit: Query[int, P(description=f"Images in this page (1-{MAX_LIMIT}).")] = 100,
                offset: Query[int, P(description=f"Images skipped before this page (0-{MAX_OFFSET}).")] = 0):
    """Counts, then a page of the matching images."""
    if not 0 < limit <= MAX_LIMIT:
        raise HttpError(400, f"limit must be 1-{MAX_LIMIT}, got {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise HttpError(400, f"offset must be 0-{MAX_OFFSET}, got {offset}")
    cohort = _cohort(request, body, source_factory())
    rows = cohort.images(limit=limit, offset=offset)
    return {"counts": cohort.counts().as_dict(), "limit": limit, "offset": offset,
            "images": rows.astype(object).where(rows.notna(), None).to_dict(orient="records")}


@router.post("/export", summary="Export a cohort as a zip (tables, DICOM, manifest with checksums)")
def export_zip(request, body: FilterIn,
               formats: Query[str, P(description="Comma-separated: parquet, csv and dicom (the images in the bucket layout).")] = "parquet,csv,dicom"):
    """The cohort as a zip (tables, DICOM in the bucket layout, manifest.csv). A warehouse
    object missing or damaged answers 503 naming its key."""
    user = _user(request)
    try:
        scope_for(user)
        chosen = parse_formats(formats)
        flt = CohortFilter.from_dict(body.dict())
    except ScopeError as exc:
        raise HttpError(403, str(exc)) from exc
    except (CohortError, ExportError) as exc:
        raise HttpError(400, str(exc)) from exc
    # Only a request that can be served gets a folder, and every outcome removes it.
    folder = Path(tempfile.mkdtemp(prefix="nccid-export-"))
    try:
        handle = _export_to(folder / "cohort.zip", user, flt, chosen)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # an open handle keeps its data until sent
    return FileResponse(handle, as_attachment=True, filename="cohort.zip",
                        content_type="application/zip")


def _export_to(path: Path, user, flt: CohortFilter, formats: tuple[str, ...]):
    try:
        export_cohort(user, flt, path, formats, source_factory())
    except ScopeError as exc:
        raise HttpError(403, str(exc)) from exc
    except CohortError as exc:
        raise HttpError(400, str(exc)) from exc
    except ExportError as exc:  # the warehouse, not the request: the message names keys only
        raise HttpError(503, str(exc)) from exc
    return path.open("rb")


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
