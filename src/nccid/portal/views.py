"""The site portal pages. Business rules live in the parts' services; views route and render.

Every page but the login page needs a signed-in user; a user of one site never sees another
site's uploads (404, so the object's existence is not confirmed). Every form works without
JavaScript and every state change is a POST followed by a redirect (no double submit on reload).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.urls import reverse, reverse_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect, requires_csrf_token
from django.views.decorators.http import require_GET, require_POST

from . import auth, content
from .forms import (
    PASSWORD_CHANGE_REQUIRED,
    SignInForm,
    UploadForm,
    name_what_is_missing,
    too_large,
    too_large_message,
)
from .paging import paginate, query_prefix
from .templatetags.portal_tags import uploads_title

log = logging.getLogger("nccid.portal")


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True
    form_class = SignInForm


class LogoutView(auth_views.LogoutView):
    """Signs out on a POST only (Django 5): a link or image cannot sign a user out. A GET (an
    address typed, or where signing in led back to) shows a page with the Sign out button."""

    http_method_names = ["get", "head", "post", "options"]

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect(settings.LOGIN_URL)
        return render(request, "portal/logout.html")


class AxesCountedPasswordChangeForm(PasswordChangeForm):
    """Checks the old password through authenticate(), so django-axes counts a wrong one as a
    failed sign-in and its lockout applies: a signed-in session cannot guess without limit."""

    def __init__(self, user, *args, request: HttpRequest, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request
        name_what_is_missing(self, PASSWORD_CHANGE_REQUIRED)

    def clean_old_password(self) -> str:
        old_password = self.cleaned_data["old_password"]
        if authenticate(self.request, username=self.user.get_username(), password=old_password) is None:
            raise ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "portal/password_change.html"
    success_url = reverse_lazy("portal:home")
    form_class = AxesCountedPasswordChangeForm

    def get_form_kwargs(self) -> dict:
        return {**super().get_form_kwargs(), "request": self.request}

    def form_valid(self, form):
        from nccid.accounts.signals import acting_as

        with acting_as(self.request.user):  # audited (account.password) as set by its owner
            response = super().form_valid(form)
        messages.success(self.request, "Your password has been changed.")
        return response


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/home.html", {"cards": _home_cards(request.user),
                                                "purpose": _home_purpose(request.user)})


def _home_purpose(user) -> str:
    """The home page's opening line: what this service is for, to this user's role."""
    if user.may_reidentify:
        return ("Run the national database: see what has arrived from every site, review held "
                "images, withdraw patients and read the audit log. Identifiers stay in the key "
                "vault.")
    if user.is_data_manager:  # administrators: they run the service and may query research data
        return ("Run the national database: see what has arrived from every site, manage sites "
                "and accounts, and read the audit log. Re-identifying (held images, finding a "
                "patient or study, the key vault) is for data managers only.")
    if auth.can_upload(user):
        return ("Send your site's chest imaging and clinical data to the national database. "
                "Patient identifiers are replaced by pseudonyms as the data arrive.")
    return ("Pseudonymised chest imaging and clinical data for research: count, list and "
            "export cohorts of the training set. Nothing here identifies a patient.")


def _home_cards(user) -> list[dict]:
    """The home page's cards for this user's role: what they can do here, most used first."""
    from django.urls import reverse

    def card(title: str, url: str, text: str, card_id: str = "") -> dict:
        return {"title": title, "href": url if url.startswith("/") else reverse(url),
                "text": text, "id": card_id}

    cards = []
    uploads = reverse("portal:my_uploads")
    uploader = auth.can_upload(user)
    if uploader:
        cards += [card(kind["nav"], kind["url_name"],
                       f"Upload a spreadsheet made from the {kind['title']}.")
                  for kind in content.kinds().values()]
        if user.site_id is not None and not auth.sees_all_sites(user):
            cards.append(card(uploads_title(user), uploads,
                              "What your site has sent: spreadsheets and images received."))
    if user.may_reidentify:
        cards.append(_review_card(card))
    if user.is_data_manager:
        cards.append(card("Dashboard", "figures:dashboard", "Arrivals over time, age and sex, "
                          "and how complete each centre's clinical data are."))
    if user.may_reidentify:  # not administrators, who may query research data
        cards.append(card("Withdraw a patient", "figures:withdraw",
                          "When a patient objects or a site sent the wrong patient: see what is "
                          "held of them, then remove it and refuse them from now on.",
                          "withdraw-card"))
        cards.append(card("Remove a study", "figures:remove_study",
                          "When an image shows an identifier the review did not catch, or a site "
                          "sent a study in error: remove that one study.", "remove-study-card"))
        cards.append(card("Reveal an NHS/CHI number", "figures:vault",
                          "The number behind a pseudonym, when a site's query needs it: "
                          "shown once, with your reason recorded in the audit log.",
                          "vault-card"))
    if user.is_data_manager:
        cards.append(card("Audit log", "figures:audit", "Who revealed, looked up, withdrew, "
                          "uploaded, queried or exported what, when and why."))
    if auth.sees_all_sites(user):
        cards.append(card(uploads_title(user), uploads,
                          "What each site has sent: spreadsheets and images received."))
    if user.role == "admin":
        cards.append(card("Administration", "admin:index", "Sites, accounts and API tokens, and the "
                          "uploads' records (Django's admin site; never a patient's clinical "
                          "data).", "admin-card"))
    elif user.is_data_manager and user.is_staff:  # what accounts/admin.py lets them change
        cards.append(card("Sites and accounts", "admin:index", "Add and change sites, and the "
                          "accounts of site staff and researchers, and revoke their API "
                          "tokens (Django's admin site).",
                          "admin-card"))
    if user.role in ("researcher", "admin"):
        cards.append(card("Research access", "portal:research",
                          "Count, list and export cohorts of the training set through the API, "
                          "or with the nccid research command and nccid.research.open in Python.",
                          "research-card"))
    return cards + [
        card("Summary", "figures:summary",
             "The national figures: patients, images and studies received so far."),
        card("Guidance And Documentation", "portal:guidance",
             "How to fill the templates, send images and what happens to the data."),
        card("FAQ", "portal:faq", "Answers to the questions sites ask most."),
    ]


def _review_card(card) -> dict:
    """The review queue's card, saying how many images wait."""
    from nccid.imaging.services import held_images

    held = held_images().count()
    return card("Review queue", "figures:review",
                f"{held} image{pluralize(held)} held for review: look at each, then release or "
                "reject it." if held else "No image is waiting for review.", "review-card")


@login_required
@require_GET
def research(request: HttpRequest) -> HttpResponse:
    """How a researcher gets at the data: their sets, the API with a token, the server-side
    Python and CLI, and the withdrawn list."""
    if not request.user.is_researcher:
        raise PermissionDenied("research access is for researchers and administrators")
    sets = request.user.allowed_sets()  # what the research scope allows (never validation)
    return render(request, "portal/research.html", {
        "sets": sets, "api_base": request.build_absolute_uri("/api/"),
        **_catalogue_freshness(sets),
    })


def _catalogue_freshness(sets: list[str]) -> dict:
    """What researchers see is the catalogue as of its last refresh: when that was, and how
    many images and clinical records of their sets arrived (or, records, changed) since: shown
    at the next refresh. Counts only. The time is None before the first refresh, or while the
    warehouse does not answer (``unreachable``: the records since are not known then)."""
    from nccid.warehouse.catalogue import catalogue_updated_at
    from nccid.warehouse.models import ImageRecord, PatientSet
    from nccid.warehouse.service import clinical_changed_since
    from nccid.warehouse.storage import StorageError

    waiting = ImageRecord.objects.filter(catalogue_part=None, set_name__in=sets).count()
    try:
        as_of = catalogue_updated_at()
    except (StorageError, OSError):
        log.warning("the research page could not read the catalogue's state", exc_info=True)
        return {"catalogue_as_of": None, "images_since": waiting, "unreachable": True}
    in_sets = PatientSet.objects.filter(set_name__in=sets).values("pseudonym")
    # No margin (unlike the refresher's check): a record the refresh read is not waiting.
    records = clinical_changed_since(as_of).filter(pseudonym__in=in_sets).count()
    return {"catalogue_as_of": as_of, "images_since": waiting, "records_since": records}


@login_required
@require_GET
def guidance(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/guidance.html",
                  content.guidance_context(request.user, request.get_host()))


@login_required
@require_GET
def faq(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/faq.html", content.guidance_context(request.user, request.get_host()))


def _kind_or_404(kind: str) -> dict:
    if kind not in content.KIND_PAGES:
        raise Http404("no such template")
    return content.kinds()[kind]


@login_required
@require_GET
def template_download(request: HttpRequest, kind: str) -> HttpResponse:
    """The current blank template of a kind, generated fresh from the schema."""
    info = _kind_or_404(kind)
    data = content.template_bytes(kind)
    response = HttpResponse(
        data, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response["Content-Disposition"] = f'attachment; filename="{info["filename"]}"'
    return response


@csrf_exempt  # not exempt: checked by _upload, once the size is known to be within the limit
@login_required
def upload(request: HttpRequest, kind: str) -> HttpResponse:
    """The upload page. A POST whose Content-Length is over the limit is refused before its
    body is read (reading it checks the CSRF token): the form again, saying the limit."""
    info = _kind_or_404(kind)
    if not auth.can_upload(request.user):  # the page exists: the 403 names the role
        raise PermissionDenied("uploads are for site uploaders")
    if request.method == "POST" and too_large(request):
        form = UploadForm(acting_for_any_site=not request.user.is_uploader)
        form.errors["file"] = form.error_class([too_large_message()])
        return render(request, "portal/upload.html", {"kind": info, "form": form}, status=413)
    return _upload(request, kind, info)


@csrf_protect
def _upload(request: HttpRequest, kind: str, info: dict) -> HttpResponse:
    admin = not request.user.is_uploader
    bound = (request.POST, request.FILES) if request.method == "POST" else (None, None)
    form = UploadForm(*bound, acting_for_any_site=admin)
    if request.method == "POST" and form.is_valid():
        site = auth.upload_site_for(request.user, form.cleaned_data.get("site"))
        made = _preview(request, form, site, kind)
        if made is not None:
            return redirect("portal:upload_preview", pk=made.pk)
    return render(request, "portal/upload.html", {"kind": info, "form": form},
                  status=400 if form.errors else 200)


def _preview(request: HttpRequest, form: UploadForm, site, kind: str):
    """Validate the file with the clinical services; a failure becomes a form error, not a 500."""
    from nccid.clinical import services

    uploaded = form.cleaned_data["file"]
    try:
        return services.preview_upload(site, kind, uploaded.name, uploaded.read(), request.user)
    except Exception as exc:  # the services' errors name a row/column, never an identifier
        if not _is_user_error(exc):
            raise
        form.add_error("file", str(exc))
        return None


@requires_csrf_token  # the page's header has the sign-out form
def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler403``: Django's 403 page, with the reason when the refusal gives one written
    for the user (``auth.Refused``), not the generic 'ask the data management team'."""
    reason = str(exception) if isinstance(exception, auth.Refused) else ""
    return HttpResponseForbidden(render_to_string("403.html", {"reason": reason}, request))


def _is_user_error(exc: Exception) -> bool:
    """The clinical part's own error classes (and ValueError) are mistakes in the file."""
    return isinstance(exc, ValueError) or type(exc).__module__.startswith("nccid.clinical")


def _upload_or_404(request: HttpRequest, pk: int):
    from nccid.clinical.models import Upload

    found = Upload.objects.select_related("site").filter(pk=pk).first()
    if found is None:
        raise Http404("no such upload")
    auth.check_site_access(request.user, found.site_id)
    return found


def _check_page(request: HttpRequest, pk: int) -> str:
    """The check-upload page of upload ``pk``, where Confirm and Cancel are pressed."""
    return reverse("portal:upload_preview", kwargs={"pk": pk})


@login_required
@require_GET
def upload_preview(request: HttpRequest, pk: int) -> HttpResponse:
    found = _upload_or_404(request, pk)
    facts = content.upload_facts(found)
    can_act = auth.can_upload(request.user) and (
        request.user.site_id == found.site_id or not request.user.is_uploader)
    return render(request, "portal/upload_preview.html", {
        "upload": found, "facts": facts, "kind": content.kinds().get(facts["kind"], {}),
        "can_act": can_act,
        "yours": can_act and request.user.is_uploader,  # an admin may act, but it is the site's
    })


@auth.signed_in_or_back_to(_check_page)
@require_POST
def upload_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    from nccid.clinical import services

    found = _upload_or_404(request, pk)
    auth.check_can_act_on(request.user, found.site_id)
    status = found.status
    if status == "accepted":
        # A second press of Confirm, or a resubmitted form: the first one already imported it.
        messages.info(request, "This upload was already accepted; nothing was imported twice.")
        return redirect("portal:upload_preview", pk=found.pk)
    if status != "preview":
        expired = services.expiry_note(found)  # cancelled by the upkeep: say so, and why
        messages.error(request, f"This upload {found.message}." if expired else
                       f"This upload is {status} and cannot be confirmed. Upload the file again.")
        return redirect("portal:upload_preview", pk=found.pk)
    try:
        done = services.confirm_upload(found, request.user)
    except Exception as exc:
        if not _is_user_error(exc):
            log.exception("confirming upload %s failed", found.pk)
        messages.error(request, "The upload could not be imported and nothing was saved: "
                       f"{exc if _is_user_error(exc) else 'an internal error (logged)'}. "
                       "Try again, or contact the NCCID team if it keeps failing.")
        return redirect("portal:upload_preview", pk=found.pk)
    facts = content.upload_facts(done)
    messages.success(request, f"Upload accepted: {facts['n_new']} new, {facts['n_updated']} updated, "
                     f"{facts['n_unchanged']} unchanged record(s).")
    return redirect(reverse("portal:my_uploads") + _site_query(request, found.site))


@auth.signed_in_or_back_to(_check_page)
@require_POST
def upload_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    from nccid.clinical import services

    found = _upload_or_404(request, pk)
    auth.check_can_act_on(request.user, found.site_id)
    if found.status == "preview":
        services.cancel_upload(found, request.user)
        messages.info(request, "Upload cancelled: nothing from this file was saved.")
    else:
        messages.info(request, "This upload can no longer be cancelled.")
    return redirect(reverse("portal:my_uploads") + _site_query(request, found.site))


def _site_query(request: HttpRequest, site) -> str:
    return "" if request.user.site_id == site.pk else f"?site={site.code}"


@login_required
@require_GET
def upload_errors_csv(request: HttpRequest, pk: int) -> HttpResponse:
    from nccid.clinical import services

    found = _upload_or_404(request, pk)
    text = services.errors_as_csv(found)
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="upload-{found.pk}-errors.csv"'
    return response


@login_required
@require_GET
def my_uploads(request: HttpRequest) -> HttpResponse:
    if request.user.role == "researcher":  # researchers: summary and research access only
        raise PermissionDenied("site uploads are for site uploaders and data managers")
    code = request.GET.get("site")
    if code and "\x00" in code:  # in no site code (and PostgreSQL refuses it in a query)
        raise Http404("no such site")
    site = auth.visible_site(request.user, code)
    context: dict = {"uploads": None, "studies": None, "imaging_ready": False}
    if site is not None:
        context.update(_site_history(request, site))
    sites = None
    if auth.sees_all_sites(request.user):
        from nccid.accounts.models import Site

        sites = Site.objects.order_by("code")
    return render(request, "portal/my_uploads.html", context | {
        "site": site, "sites": sites, "node": content.node_details(),
        "can_act": auth.can_upload(request.user),  # a data manager waits for the site
        "yours": request.user.is_uploader,  # (an admin sees every site's checks: the site's)
        "max_mb": settings.NCCID_MAX_SPREADSHEET_BYTES // (1024 * 1024),
    })


UPLOADS_PAGE_SIZE = 20  # spreadsheet uploads per page of My uploads
STUDIES_PAGE_SIZE = 50  # DICOM studies per page: a large site sends tens of thousands


def _site_history(request: HttpRequest, site) -> dict:
    """My uploads' two paged lists: the site's spreadsheets, and its DICOM studies (all, or
    those of the status chosen), with how many studies have each status."""
    from nccid.clinical import services

    uploads = paginate(request, services.uploads_for_site(site).defer("errors"),
                       UPLOADS_PAGE_SIZE, param="uploads_page", label="Pages of spreadsheet uploads")
    context = {"uploads": uploads,
               "upload_rows": [content.upload_summary(u) | {"pk": u.pk} for u in uploads.items]}
    as_the_site = not auth.sees_all_sites(request.user)  # data managers see the true state
    statuses = content.study_statuses(site, as_the_site=as_the_site)
    status = request.GET.get("status", "")
    status = status if status in {s["code"] for s in statuses} else ""
    studies = content.studies_for_site(site, status, as_the_site=as_the_site)
    if studies is None:
        return context
    studies = paginate(request, studies, STUDIES_PAGE_SIZE, label="Pages of DICOM studies")
    return context | {
        "imaging_ready": True, "studies": studies,
        "study_rows": [content.study_row(r) for r in studies.items],
        "statuses": statuses, "status": status,
        "all_studies": sum(s["count"] for s in statuses),
        "filter_prefix": query_prefix(request, "status", "page"),
    }
