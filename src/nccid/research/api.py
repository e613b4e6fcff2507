"""JSON API for researchers (mounted at /api/research/ by the portal): cohort counts, lists and
zip exports. Bearer token (``nccid user token``) or a logged-in session; training set only.
Bad input of any kind answers 400 with one ``detail`` text naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import pyarrow as pa
from django.http import FileResponse, HttpRequest, HttpResponse
from ninja import P, Query, Router, Schema
from ninja.errors import HttpError, ValidationError
from pydantic import BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from nccid.warehouse.catalogue_schema import IMAGES_SCHEMA

from .cohort import (
    MAX_AGE,
    MAX_CONDITIONS,
    CohortError,
    CohortFilter,
    QueryLimitError,
    ScopeError,
    scope_for,
    select_cohort,
)
from .export import ExportError, export_cohort, parse_formats
from .source import Source, default_source
from .staging import staging_folder, staging_root

MOUNT = "research/"  # where the portal mounts this router, under its API root
# The router exists before the portal is imported: the portal imports this module to mount
# it, so whichever of the two is imported first, the portal finds the router.
router = Router(tags=["research"])

from nccid.portal import api as portal  # noqa: E402  (the cycle just described)

# The portal's own credentials: no credentials or a bad token is 401, a session needs CSRF.
router.auth = [portal.TokenAuth(), portal.SessionAuth()]
# Tests point this at their own catalogue; production reads the installation's.
source_factory = default_source


def _one_or_many(value: Any) -> Any:
    """A bare value is a one-item list, as ``CohortFilter.from_dict`` reads it."""
    return [value] if isinstance(value, str) else value


def _conditions(value: Any) -> Any:
    """``{"itu_admission": "Yes"}`` is ``["itu_admission=Yes"]``, as ``from_dict`` reads it."""
    if isinstance(value, dict):
        return [f"{name}={wanted}" for name, wanted in value.items()]
    return _one_or_many(value)


def _not_a_bool(value: Any) -> Any:
    """JSON true/false is no age (pydantic's lax int reads true as 1), as in ``within``."""
    if isinstance(value, bool):
        raise PydanticCustomError("whole_number", "{value} is not a whole number",
                                  {"value": repr(value)})
    return value


Values = Annotated[list[str], BeforeValidator(_one_or_many)]
Age = Annotated[int | None, BeforeValidator(_not_a_bool), Field(ge=0, le=MAX_AGE)]


class FilterIn(Schema):
    """A cohort filter (docs/research.md); a key not listed here is refused, never ignored."""

    model_config = ConfigDict(extra="forbid")

    covid_status: Values = []
    modality: Values = []
    site: Values = []
    study_date_from: str | None = None
    study_date_to: str | None = None
    age_min: Age = None
    age_max: Age = None
    sex: Values = []
    ethnicity: Values = []
    clinical: Annotated[list[str], BeforeValidator(_conditions), Field(max_length=MAX_CONDITIONS)] = []
    within: dict[str, Any] | None = None


class CountsOut(Schema):
    patients: int
    studies: int
    images: int


def _python_type(kind: pa.DataType) -> type:
    if pa.types.is_date(kind):
        return date
    if pa.types.is_timestamp(kind):
        return datetime
    return int if pa.types.is_integer(kind) else str


# One image of a cohort as the catalogue has it (nccid.warehouse.catalogue_schema); a value
# the catalogue does not hold (e.g. arrival times under shift-dates) is null.
ImageOut = create_model("ImageOut", __base__=Schema, **{
    field.name: (_python_type(field.type) | None, None) for field in IMAGES_SCHEMA})
IMAGE_DATES = frozenset(f.name for f in IMAGES_SCHEMA if pa.types.is_date(f.type))
IMAGE_TIMES = frozenset(f.name for f in IMAGES_SCHEMA if pa.types.is_timestamp(f.type))


class PageOut(Schema):
    counts: CountsOut
    limit: int
    offset: int
    images: list[ImageOut]


class WithdrawnPatient(Schema):
    pseudonym: str
    withdrawn_at: str = Field(json_schema_extra={"format": "date-time"})
    reinstated_at: str | None = Field(json_schema_extra={"format": "date-time"})


class WithdrawnStudy(Schema):
    study_uid: str
    withdrawn_at: str = Field(json_schema_extra={"format": "date-time"})


class WithdrawnOut(Schema):
    patients: list[WithdrawnPatient]
    studies: list[WithdrawnStudy]


def answers(success: dict, *errors: int) -> dict:
    """A research operation's answers for the schema: the success, 401 and 403 (credentials,
    role, a session's CSRF token), 400 (any bad input) and ``errors``; each error a ``detail``."""
    return {**success, **{status: portal.ErrorOut for status in sorted({400, 401, 403, *errors})}}


def image_rows(frame: pd.DataFrame) -> list[dict]:
    """A page of images for JSON: a DATE as its date (DuckDB hands pandas a midnight timestamp),
    an arrival time (UTC without a zone in the catalogue) in UTC, a missing value as None."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    for row in rows:
        for name in IMAGE_DATES & row.keys():
            if isinstance(row[name], datetime):
                row[name] = row[name].date()
        for name in IMAGE_TIMES & row.keys():
            if isinstance(row[name], datetime):
                row[name] = pd.Timestamp(row[name]).to_pydatetime().replace(tzinfo=UTC)
    return rows


def _user(request):
    user = request.auth
    return user if getattr(user, "is_authenticated", False) else request.user


@contextmanager
def _answered() -> Iterator[None]:
    """The research errors as HTTP answers: 403 scope, 503 a query stopped by the research
    limits (the installation's, not the request's syntax), 400 any other filter problem."""
    try:
        yield
    except ScopeError as exc:
        raise HttpError(403, str(exc)) from exc
    except QueryLimitError as exc:
        raise HttpError(503, str(exc)) from exc
    except CohortError as exc:
        raise HttpError(400, str(exc)) from exc


def _cohort(request, body: FilterIn, source: Source, action: str = "research.cohort"):
    with _answered():
        return select_cohort(_user(request), CohortFilter.from_dict(body.dict()), source, action)


@router.post("/cohort/count", response=answers({200: CountsOut}, 503), summary="Count the patients, studies and images of a cohort")
def cohort_count(request, body: FilterIn):
    """Patients, studies and images matching the filter (the user's sets only)."""
    cohort = _cohort(request, body, source_factory())
    try:
        with _answered():
            return cohort.counts().as_dict()
    finally:
        cohort.close()


MAX_LIMIT = 10_000
MAX_OFFSET = 2**31 - 1  # beyond any catalogue; a bigger number would overflow the query


@router.post("/cohort/list", response=answers({200: PageOut}, 503),
             summary="A cohort's counts and a page of its images")
def cohort_list(request, body: FilterIn,
                limit: Query[int, P(ge=1, le=MAX_LIMIT, description=f"Images in this page (1-{MAX_LIMIT}).")] = 100,
                offset: Query[int, P(ge=0, le=MAX_OFFSET, description=f"Images skipped before this page (0-{MAX_OFFSET}).")] = 0):
    """Counts, then a page of the matching images."""
    cohort = _cohort(request, body, source_factory(), "research.list")  # rows: a hand-out
    try:
        with _answered():
            rows = cohort.images(limit=limit, offset=offset)
            counts = cohort.counts().as_dict()
    finally:
        cohort.close()
    return {"counts": counts, "limit": limit, "offset": offset, "images": image_rows(rows)}


@router.post("/export", summary="Export a cohort as a zip (tables, DICOM, manifest with checksums)",
             response=answers({200: None}, 503),
             openapi_extra={"responses": {200: {"description": "The cohort's zip",
                                                "content": {"application/zip": {}}}}})
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
    # Only a request that can be served gets a folder, every outcome removes it, and one
    # left by a killed worker is swept (nccid.research.staging). The zip is unlinked before
    # a byte is sent: the open handle keeps its data until then, and no longer.
    with staging_folder(staging_root()) as folder:
        handle = _export_to(folder / "cohort.zip", user, flt, chosen)
    return FileResponse(handle, as_attachment=True, filename="cohort.zip",
                        content_type="application/zip")


def _export_to(path: Path, user, flt: CohortFilter, formats: tuple[str, ...]):
    try:
        with _answered():
            export_cohort(user, flt, path, formats, source_factory())
    except ExportError as exc:  # the warehouse, not the request: the message names keys only
        raise HttpError(503, str(exc)) from exc
    return path.open("rb")


@router.get("/withdrawn", response=answers({200: WithdrawnOut}), summary="Patients withdrawn and studies removed: delete them from your copies")
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


# ---------------------------------------------------------------- bad input: 400 here

def _is_research(request: HttpRequest) -> bool:
    from django.urls import reverse

    return request.path.startswith(reverse(f"{portal.api.urls_namespace}:api-root") + MOUNT)


def _field_of(error: dict) -> str:
    """``age_min`` or ``modality.0`` from ninja's location (source, then the body's name)."""
    loc = [str(part) for part in error.get("loc", ())]
    return ".".join(loc[2:] if loc[:1] == ["body"] else loc[1:]) or "body"


def _problem(error: dict) -> str:
    if error.get("type") == "extra_forbidden":
        return f"unknown filter field (use {', '.join(FilterIn.model_fields)})"
    return error.get("msg", "invalid")


@portal.api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """Research requests answer 400 naming each field, as their other bad input does; the
    portal's other routers keep ninja's 422 with a list (docs/api.md)."""
    if not _is_research(request):
        return portal.api.create_response(request, {"detail": exc.errors}, status=422)
    detail = "; ".join(f"{_field_of(e)}: {_problem(e)}" for e in exc.errors)
    return portal.api.create_response(request, {"detail": detail}, status=400)
