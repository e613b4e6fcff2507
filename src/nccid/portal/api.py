"""The JSON API (django-ninja) with its OpenAPI schema at /api/docs and /api/openapi.json.

The same operations as the portal pages, calling the same service functions, so the two can
never drift. Two ways in: ``Authorization: Bearer <token>`` (tokens from ``nccid user token``,
only their SHA-256 is stored) for scripts, and the portal's session cookie (with CSRF on
unsafe methods) for the browser. Errors are JSON ``{"detail": "..."}`` with 401, 403, 404, 405,
409 or 415, and 422 with ``detail`` a list of problems each with its location (as ninja's own
checks answer); an object of another site is always 404, in the same words as a missing one.
Each operation declares the answers it gives (``answers``), so the schema lists them all.
"""

from __future__ import annotations

import importlib
import json
import logging
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from ninja import File, Form, NinjaAPI, P, Path, Query, Router, Schema, Status, Swagger
from ninja.decorators import decorate_view
from ninja.errors import HttpError, ValidationError
from ninja.files import UploadedFile
from ninja.security import HttpBearer
from ninja.security.apikey import APIKeyCookie
from pydantic import ConfigDict

from nccid.accounts.models import ApiToken, Role, Site, reidentifying_refused

from . import auth as access

log = logging.getLogger("nccid.portal")

# Writing last_used on every call would turn each read into a write; once a minute is enough.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


class TokenAuth(HttpBearer):
    """``Authorization: Bearer nccid_…``: looked up by digest, for active accounts only."""

    def authenticate(self, request: HttpRequest, token: str):
        if not token:
            return None
        found = (ApiToken.objects.select_related("user", "user__site")
                 .filter(digest=ApiToken.digest_of(token.strip())).first())
        if found is None or not found.user.is_active:
            return None
        now = timezone.now()
        if found.last_used is None or now - found.last_used > TOKEN_TOUCH_INTERVAL:
            ApiToken.objects.filter(pk=found.pk).update(last_used=now)
        request.user = found.user
        return found.user


class SessionAuth(APIKeyCookie):
    """The portal's session; CSRF is checked on unsafe methods, only once a user is signed in."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest):
        if not request.user.is_authenticated:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key):
        user = request.user
        return user if user.is_authenticated and user.is_active else None


class PortalSwagger(Swagger):
    """django-ninja's Swagger UI in the portal's page (``portal/api_docs.html``), its files
    served by the portal. Ninja renders its own page from a CDN unless it is an installed app,
    which the portal avoids (``STATICFILES_DIRS`` in the settings says why)."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        return render(request, "portal/api_docs.html", {
            "swagger_settings": json.dumps(self.settings, indent=1), "api": api,
            "add_csrf": any(getattr(auth, "csrf", False) for auth in api.auth or ()),
        })


api = NinjaAPI(
    title="nccid API",
    version="1",
    urls_namespace="api",
    auth=[TokenAuth(), SessionAuth()],
    description=("Sites automate what the portal does: download templates, upload clinical "
                 "spreadsheets (preview, then confirm or cancel), follow their uploads and DICOM "
                 "studies, read the summary figures. Data managers work the review queue. "
                 "Researchers count, list and export cohorts of their sets and learn what was "
                 "withdrawn. Authenticate with `Authorization: Bearer <token>` (ask your data "
                 "manager for a token); what a role may not do answers 403."),
    # Deep links put a link inside each operation's toggle button (nested controls a screen
    # reader cannot reach, targets under 24 px): without them the page passes WCAG 2.2 AA.
    docs=PortalSwagger(settings={"deepLinking": False}),
)


def _detail(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return api.create_response(request, {"detail": message}, status=status)


@api.exception_handler(PermissionDenied)
def _forbidden(request, exc):
    return _detail(request, 403, str(exc) or "You do not have permission to do this.")


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _detail(request, 404, str(exc) or "Not found.")


@api.exception_handler(ObjectDoesNotExist)
def _no_object(request, exc):
    return _detail(request, 404, "Not found.")


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    message = str(exc)
    if exc.status_code == 401:
        message = "Authentication required: send 'Authorization: Bearer <token>' or sign in."
    return _detail(request, exc.status_code, message)


def invalid(where: str, field: str, message: str) -> ValidationError:
    """Bad input (422) in the shape of ninja's own checks: a list of problems, each located."""
    return ValidationError([{"type": "value_error", "loc": [where, field], "msg": message}])


@csrf_exempt  # it changes nothing: a POST with a token is told 404, not the CSRF page
def not_found(request: HttpRequest, address: str = "") -> HttpResponse:
    """An address under /api/ that names no operation: JSON too, not the portal's 404 page."""
    return _detail(request, 404, "No such API address: /api/docs lists them.")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's own 400 (``handler400``: too many form fields, too big a body, a bad Host):
    JSON under /api/, as every API answer; the portal's page elsewhere."""
    if not request.path.startswith("/api/"):
        from django.views.defaults import bad_request as portal_page

        return portal_page(request, exception)
    return _detail(request, 400, _too_much(exception) or "The API could not read this request.")


def _too_much(exception: Exception | None) -> str | None:
    """Which of Django's request limits ``exception`` is, said with its number, or None."""
    from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent

    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / (1024 * 1024)
        return (f"The request is larger than the {limit:g} MB the API reads (a file sent as a "
                "multipart upload is not counted).")
    if isinstance(exception, TooManyFieldsSent):
        return (f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields, "
                "the most the API reads.")
    if isinstance(exception, TooManyFilesSent):
        return (f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES:,} files, "
                "the most the API reads.")
    return None


# ---------------------------------------------------------------- role checks

def _user(request: HttpRequest):
    return request.auth


def require_data_manager(request: HttpRequest, identifying: str) -> None:
    """Data managers only: the review queue shows images that may show a name beside their
    pseudonym, which an administrator, who may query research data, must not see (refused,
    audited as ``<identifying>.denied``, as the portal's pages)."""
    user = _user(request)
    if not user.is_data_manager:
        raise PermissionDenied("Only data managers may do this.")
    refused = reidentifying_refused(user, identifying)
    if refused:
        raise PermissionDenied(refused[:1].upper() + refused[1:] + ".")


def require_site_role(request: HttpRequest) -> None:
    """Uploads and studies are for site uploaders, data managers and administrators."""
    user = _user(request)
    if user.role == Role.RESEARCHER:
        raise PermissionDenied("Researchers have no access to site uploads.")
    if user.role == Role.UPLOADER and user.site_id is None:
        raise PermissionDenied("Your account is not attached to a site.")


def _site_of_code(code: str) -> Site | None:
    """The site of a code as typed; one holding a NUL (PostgreSQL refuses it) is none."""
    code = code.strip().upper()
    return None if "\x00" in code else Site.objects.filter(code=code).first()


def _site_filter(request: HttpRequest, site_code: str | None) -> dict:
    """Filter for the site a list may show: one's own, or any (or one chosen) for data managers."""
    user = _user(request)
    if access.sees_all_sites(user):
        if site_code:
            site = _site_of_code(site_code)
            if site is None:
                raise Http404(f"No site with code {site_code!r}.")
            return {"site": site}
        return {}
    if site_code and site_code.strip().upper() != user.site.code:
        # The same answer whether or not the code is a site's: nothing about it is confirmed.
        raise PermissionDenied(f"An uploader sees their own site's only: leave out site, "
                               f"or send site={user.site.code}.")
    return {"site_id": user.site_id}


# ---------------------------------------------------------------- schemas

class ErrorOut(Schema):
    """An error other than bad input: what went wrong, in a sentence."""

    detail: str


class Problem(Schema):
    """One problem of the input: where (e.g. ``["query", "limit"]``) and what."""

    model_config = ConfigDict(extra="allow")  # ninja adds ctx, input, url for its checks

    type: str
    loc: list[str | int]
    msg: str


class InvalidOut(Schema):
    """Bad input (422): each problem with its location."""

    detail: list[Problem]


ERROR_SCHEMAS = {422: InvalidOut}


def answers(success: dict, *errors: int) -> dict:
    """An operation's answers for its schema: the success, 401 (no or bad credentials; every
    operation) and the errors it gives (every POST gives 403: a session without its CSRF token)."""
    return {**success, **{status: ERROR_SCHEMAS.get(status, ErrorOut)
                          for status in sorted({401, *errors})}}


class MeOut(Schema):
    username: str
    role: str
    site: str | None


class SummaryRow(Schema):
    label: str
    value: int


class SiteFiguresOut(Schema):
    """Your own site's figures, exact, as the database holds them: the patients its stored
    studies or clinical records name, its studies with images stored. A study held for review
    or waiting for a link counts once stored (GET /api/studies lists every one, with status)."""

    patients: int
    studies: int


class SummaryOut(Schema):
    """The programme's figures. For all but data managers and administrators the counts of
    patients, studies and images are rounded to the nearest ``rounded_to`` (1: exact), so no
    site can learn from them whether another site sent a patient; an uploader is given their
    own site's figures exactly in ``your_site``."""

    centres: int
    patients_with_images: int
    total_patients: int
    studies_xray: int
    studies_mri: int
    studies_ct: int
    studies_other: int
    images: int
    rounded_to: int
    your_site: SiteFiguresOut | None
    table: list[SummaryRow]


class UploadError(Schema):
    row: int | None
    column: str | None
    value: str | None
    reason: str
    severity: str


class UploadOut(Schema):
    id: int
    site: str
    kind: str
    status: str
    created: datetime | None
    message: str
    rows: int | None
    accepted: int | None
    new: int | None
    updated: int | None
    unchanged: int | None
    rejected: int | None
    n_errors: int  # every problem found, errors and warnings, those not listed too
    # About the file as a whole (a misspelt column ignored, values under no header, blank cells
    # that clear stored values): read them before confirming, as with errors.
    sheet_warnings: list[str]


class UploadNotListed(Schema):
    """More problems of a column, only counted: a sheet wrong in most of its cells has millions."""

    column: str
    severity: str
    count: int


class UploadDetailOut(UploadOut):
    errors: list[UploadError]  # the first (1,000 per column and severity, 10,000 per severity)
    not_listed: list[UploadNotListed]


class StudyOut(Schema):
    site: str
    study_uid: str
    patient: str
    modality: str
    source: str
    instances: int
    stored: int
    pending: int
    held: int
    rejected: int  # refused after they were received (e.g. no patient identifier)
    problem: str   # why the latest of them was refused
    status: str
    first_received: datetime
    last_received: datetime


class HeldOut(Schema):
    id: int
    site: str
    pseudonym: str
    study_uid: str
    modality: str
    reason: str
    source: str
    received_at: datetime


class DecisionOut(Schema):
    id: int
    status: str


# ---------------------------------------------------------------- operations

@api.get("/me", response=answers({200: MeOut}), tags=["account"], summary="Who the token or session belongs to")
def me(request):
    user = _user(request)
    return {"username": user.username, "role": user.role, "site": user.site.code if user.site else None}


@api.get("/summary", response=answers({200: SummaryOut}), tags=["figures"], summary="The programme's summary figures")
def summary(request):
    from .summary import summary_for

    figures, own = summary_for(_user(request))
    data = figures.as_dict()
    data["your_site"] = own and {"patients": own.patients, "studies": own.studies}
    data["table"] = [{"label": label, "value": value} for label, value in figures.rows()]
    return data


@api.get("/templates/{kind}", tags=["uploads"], summary="Download the current blank template of a kind",
         response=answers({200: None}, 404),
         openapi_extra={"responses": {200: {"description": "The workbook (xlsx)", "content": {
             "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}}})
def template(request, kind: Path[str, P(description="positive, negative or isaric.")]):
    from . import content

    if kind not in content.kinds():
        raise Http404(f"No template {kind!r}: use one of {', '.join(content.kinds())}.")
    response = HttpResponse(
        content.template_bytes(kind),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response["Content-Disposition"] = f'attachment; filename="{content.kinds()[kind]["filename"]}"'
    return response


_COUNTS = {"rows": "total_rows", "accepted": "accepted_rows", "rejected": "rejected_rows",
           "new": "new_records", "updated": "updated_records", "unchanged": "unchanged_records"}


def _upload_out(upload, with_errors: bool = False) -> dict:
    """The facts of an upload the site may see, never a file name (none is kept)."""
    errors = list(upload.errors or [])
    out = {"id": upload.pk, "site": upload.site.code, "kind": upload.kind, "status": upload.status,
           "created": upload.created, "message": upload.message,
           "n_errors": len(errors) + upload.omitted_count,
           "sheet_warnings": [str(w) for w in upload.sheet_warnings or []]}
    out.update({name: getattr(upload, field) for name, field in _COUNTS.items()})
    if with_errors:
        out["not_listed"] = [{"column": str(o.get("column") or ""), "severity": o.get("severity", "error"),
                              "count": int(o.get("count", 0))} for o in upload.omitted_problems or []]
        out["errors"] = [
            {"row": e.get("row"), "column": e.get("column"),
             "value": None if e.get("value") in (None, "") else str(e.get("value")),
             "reason": str(e.get("reason") or e.get("message") or ""),
             "severity": e.get("severity", "error")}
            for e in errors
        ]
    return out


def _upload_or_404(request, upload_id: int, *, to_act: bool = False):
    """The upload, or 404 in the same words whether it is missing or another site's."""
    from nccid.clinical.models import Upload

    user = _user(request)
    found = Upload.objects.select_related("site").filter(pk=upload_id).first()
    try:
        if found is None:
            raise Http404
        access.check_site_access(user, found.site_id)
        if to_act:
            access.check_can_act_on(user, found.site_id)
    except Http404:
        raise Http404("No such upload.") from None
    return found


def _clinical_user_error(exc: Exception) -> bool:
    return isinstance(exc, ValueError) or type(exc).__module__.startswith("nccid.clinical")


def _refuse_too_large(run):
    """An upload whose Content-Length is over the limit is refused before its body is read
    (ninja reads the multipart body to find the parameters, before the operation runs)."""

    def checked(request: HttpRequest, *args, **kwargs):
        from . import forms

        if forms.too_large(request):
            return _detail(request, 413, forms.too_large_message())
        return run(request, *args, **kwargs)

    return checked


@api.post("/uploads", response=answers({201: UploadDetailOut}, 403, 404, 413, 422, 500), tags=["uploads"],
          summary="Upload a spreadsheet for preview (multipart: kind, file[, site])")
@decorate_view(_refuse_too_large)
def upload_create(request, kind: Form[str], file: File[UploadedFile], site: Form[str] = ""):
    from nccid.clinical import services

    from . import content

    user = _user(request)
    if not access.can_upload(user):
        raise PermissionDenied("Only site uploaders (and administrators) may upload.")
    if kind not in content.kinds():
        raise invalid("form", "kind", f"Unknown kind {kind!r}: use one of {', '.join(content.kinds())}.")
    chosen = None
    if site:
        chosen = _site_of_code(site)
        if chosen is None or (user.role == Role.UPLOADER and chosen.pk != user.site_id):
            raise Http404(f"No site with code {site!r}.")
    elif user.role == Role.ADMIN:
        raise invalid("form", "site", "Administrators must say which site they upload for: add site=<CODE>.")
    if file.size and file.size > settings.NCCID_MAX_SPREADSHEET_BYTES:
        raise invalid("file", "file", f"The file is larger than the limit of "
                                      f"{settings.NCCID_MAX_SPREADSHEET_BYTES // (1024 * 1024)} MB.")
    try:
        made = services.preview_upload(access.upload_site_for(user, chosen), kind,
                                       file.name or "upload", file.read(), user)
    except Exception as exc:
        if not _clinical_user_error(exc):
            # The services save a refused upload for what fails in them; this is anything else.
            log.exception("API upload failed")
            return _detail(request, 500, "The upload could not be checked: an internal error "
                                         "(logged). Nothing from the file was imported: try again, "
                                         "or contact the NCCID team if it keeps failing.")
        raise invalid("file", "file", str(exc)) from exc
    return Status(201, _upload_out(made, with_errors=True))


# ---------------------------------------------------------------- lists, a page at a time

MAX_PAGE = 1000
PAGE_HEADERS = {"X-Total-Count": {"description": "How many items the list holds in all.",
                                  "schema": {"type": "integer"}},
                "Link": {"description": "`<…?offset=N…>; rel=\"next\"` while more follow.",
                         "schema": {"type": "string"}}}
SiteQuery = Query[str | None, P(description=(
    "A site code: data managers and admins choose a site (404 if there is none); an uploader "
    "always gets their own (another site's code is 403)."))]
MAX_OFFSET = 2**31 - 1  # beyond any list; a bigger number would overflow the database's query
OffsetQuery = Query[int, P(ge=0, le=MAX_OFFSET, description=(
    f"Skip this many of the newest first (0-{MAX_OFFSET})."))]

LimitQuery = Query[int, P(ge=1, le=MAX_PAGE, description=f"At most this many (1-{MAX_PAGE}).")]


def _page(request: HttpRequest, response: HttpResponse, rows, offset: int, limit: int) -> list:
    """One page of a query; the total in X-Total-Count and the next page's address in Link."""
    total = rows.count()
    page = list(rows[offset:offset + limit])
    response["X-Total-Count"] = str(total)
    if offset + limit < total:
        query = request.GET.copy()
        query["offset"], query["limit"] = str(offset + limit), str(limit)
        response["Link"] = f'<{request.path}?{urlencode(sorted(query.items()))}>; rel="next"'
    return page


@api.get("/uploads", response=answers({200: list[UploadOut]}, 403, 404, 422), tags=["uploads"],
         summary="My site's uploads, newest first, a page at a time",
         openapi_extra={"responses": {200: {"headers": PAGE_HEADERS}}})
def upload_list(request, response: HttpResponse, site: SiteQuery = None,
                limit: LimitQuery = 100, offset: OffsetQuery = 0):
    from nccid.clinical.models import Upload

    require_site_role(request)
    rows = Upload.objects.select_related("site").filter(**_site_filter(request, site)).order_by("-pk")
    return [_upload_out(u) for u in _page(request, response, rows, offset, limit)]


@api.get("/uploads/{upload_id}", response=answers({200: UploadDetailOut}, 403, 404, 422),
         tags=["uploads"],
         summary="One upload with every error (row, column, value, reason)")
def upload_detail(request, upload_id: Path[int, P(description="The upload's number, as the upload answer gives it.")]):
    require_site_role(request)
    return _upload_out(_upload_or_404(request, upload_id), with_errors=True)


def _act_on_upload(request, upload_id: int, action: str):
    from nccid.clinical import services

    require_site_role(request)
    found = _upload_or_404(request, upload_id, to_act=True)
    try:
        done = getattr(services, f"{action}_upload")(found, _user(request))
    except services.UploadStateError as exc:  # e.g. confirming a cancelled upload
        raise HttpError(409, str(exc)) from exc
    except Exception as exc:
        if not _clinical_user_error(exc):
            raise
        raise invalid("path", "upload_id", str(exc)) from exc
    return _upload_out(done or _upload_or_404(request, upload_id), with_errors=True)


ACT_ANSWERS = answers({200: UploadDetailOut}, 403, 404, 409, 422)


@api.post("/uploads/{upload_id}/confirm", response=ACT_ANSWERS, tags=["uploads"],
          summary="Accept a previewed upload (confirming twice imports once)")
def upload_confirm(request, upload_id: Path[int, P(description="The upload's number, as the upload answer gives it.")]):
    return _act_on_upload(request, upload_id, "confirm")


@api.post("/uploads/{upload_id}/cancel", response=ACT_ANSWERS, tags=["uploads"],
          summary="Cancel a previewed upload")
def upload_cancel(request, upload_id: Path[int, P(description="The upload's number, as the upload answer gives it.")]):
    return _act_on_upload(request, upload_id, "cancel")


@api.get("/studies", response=answers({200: list[StudyOut]}, 403, 404, 422), tags=["images"],
         summary="DICOM studies my site has sent, latest received first, a page at a time "
                 "(pseudonyms and keyed UIDs only)",
         openapi_extra={"responses": {200: {"headers": PAGE_HEADERS}}})
def study_list(request, response: HttpResponse, site: SiteQuery = None,
               limit: LimitQuery = 200, offset: OffsetQuery = 0):
    from nccid.imaging.services import studies_seen

    require_site_role(request)
    as_the_site = not access.sees_all_sites(_user(request))  # data managers: the true state
    rows = _page(request, response, studies_seen(as_the_site=as_the_site).select_related("site")
                 .filter(**_site_filter(request, site)).order_by("-last_received", "-pk"),
                 offset, limit)
    return [
        {"site": r.site.code, "study_uid": r.study_uid, "patient": r.patient,
         "modality": r.modality, "source": r.source, "instances": r.instances,
         "stored": r.stored, "pending": r.pending, "held": r.held, "rejected": r.rejected,
         "problem": r.problem, "status": r.shown_status,
         "first_received": r.first_received, "last_received": r.last_received}
        for r in rows
    ]


@api.get("/review/held", response=answers({200: list[HeldOut]}, 403), tags=["review"],
         summary="Images held for review (suspected burned-in text); data managers only")
def held_list(request):
    from nccid.imaging.services import held_images

    require_data_manager(request, "imaging.held.list")
    return [_held_out(h) for h in held_images()]


def _held_out(held) -> dict:
    return {"id": held.pk, "site": held.site.code, "pseudonym": held.pseudonym or "",
            "study_uid": held.study_uid, "modality": held.modality, "reason": held.reason,
            "source": held.source, "received_at": held.received_at}


def _decide(request, held_id: int, action: str) -> dict:
    from nccid.imaging import services

    from .dashboard import held_or_404

    require_data_manager(request, "imaging.held.decide")
    held = held_or_404(held_id)
    try:
        getattr(services, f"{action}_held")(held, _user(request))
    except services.HeldDecisionError as exc:
        raise HttpError(409, str(exc)) from exc
    held.refresh_from_db()
    return {"id": held.pk, "status": held.status}


@api.get("/review/held/{held_id}/image.png", tags=["review"],
         summary="A held image's first frame as a PNG (audited, never cached); data managers only",
         response=answers({200: None}, 403, 404, 415, 422),
         openapi_extra={"responses": {200: {"description": "PNG", "content": {"image/png": {}}}}})
def held_image_png(request, held_id: Path[int, P(description="The held image's number, as /review/held lists it.")]):
    from .dashboard import held_or_404, held_preview

    require_data_manager(request, "imaging.held.view")
    shown = held_preview(held_or_404(held_id), _user(request))
    if shown.status_code == 415:  # the portal's page says why in text; the API in JSON
        return _detail(request, 415, shown.content.decode())
    return shown


DECISION_ANSWERS = answers({200: DecisionOut}, 403, 404, 409, 422)


@api.post("/review/held/{held_id}/release", response=DECISION_ANSWERS, tags=["review"],
          summary="Release a held image into the warehouse; data managers only")
def held_release(request, held_id: Path[int, P(description="The held image's number, as /review/held lists it.")]):
    return _decide(request, held_id, "release")


@api.post("/review/held/{held_id}/reject", response=DECISION_ANSWERS, tags=["review"],
          summary="Reject (delete) a held image; data managers only")
def held_reject(request, held_id: Path[int, P(description="The held image's number, as /review/held lists it.")]):
    return _decide(request, held_id, "reject")


# ---------------------------------------------------------------- routers of other parts

def add_router(prefix: str, router: Router) -> None:
    """Mount another part's router under /api/<prefix> (before the URLs are built)."""
    api.add_router(prefix, router)


def _mount_optional_routers() -> None:
    """The research part's router, if that part provides one (nccid.research.api.router)."""
    try:
        research_api = importlib.import_module("nccid.research.api")
    except ModuleNotFoundError as exc:
        if exc.name != "nccid.research.api":
            raise
        return
    router = getattr(research_api, "router", None)
    if router is not None and router not in {r for _, r in api._routers}:
        api.add_router("/research/", router)


_mount_optional_routers()
