"""Views of the summary, dashboard, review queue and key-vault pages.

The summary is for every signed-in role. The dashboard and the audit log are for data managers
and administrators; the vault, the review queue and finding a patient or a study to remove
(pages that re-identify) are for data managers only; others get 403. Revealed NHS/CHI numbers
are rendered once into a response that must not be cached, and never logged, stored or put in
a message.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from nccid.accounts.models import ADMINS_MAY_NOT_REIDENTIFY, Role, reidentifying_refused

from . import charts
from .auth import Refused, signed_in_or_back_to
from .paging import paginate
from .summary import get_summary, summary_for

log = logging.getLogger("nccid.portal")


def data_manager_required(view=None, *, signed_out_to=None, identifying: str = ""):
    """Signed in (else to the login page) and a data manager or administrator (else 403).

    ``signed_out_to(request, **kwargs)``: the page to come back to after signing in, for an
    action a session that ended sent (see ``signed_in_or_back_to``).

    ``identifying``: the audited action of a page that turns an identifier into a pseudonym or
    shows identifying content. It is for data managers only, as the vault: an administrator,
    who may query research data, is refused (403 saying why; audited as ``<action>.denied``)."""
    if view is None:
        return lambda later: data_manager_required(later, signed_out_to=signed_out_to,
                                                   identifying=identifying)
    guard = signed_in_or_back_to(signed_out_to) if signed_out_to else login_required

    @guard
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_data_manager:
            raise PermissionDenied("data managers only")
        refused = identifying and reidentifying_refused(request.user, identifying)
        if refused:
            raise Refused(refused)
        return view(request, *args, **kwargs)

    return wrapped


# A user's rendered summary page is reused for a few seconds while the figures are unchanged:
# under load most views then cost a session look-up and a dictionary read.
PAGE_SECONDS = 5


@login_required
@require_GET
def summary_page(request: HttpRequest) -> HttpResponse:
    figures, own = summary_for(request.user)  # a session's user and role are fixed
    key = f"figures:summary:{request.session.session_key}:{'.'.join(map(str, figures.version))}"
    pending = list(get_messages(request))  # a page showing messages is never reused
    content = None if pending else cache.get(key)
    if content is None:
        response = render(request, "portal/summary.html",
                          {"figures": figures, "rows": figures.rows(), "own": own})
        if not pending:
            cache.set(key, response.content, PAGE_SECONDS)
    else:
        response = HttpResponse(content)
    return response  # never stored by the browser (nccid.web.nostore), as every signed-in page


@data_manager_required
@require_GET
def dashboard_page(request: HttpRequest) -> HttpResponse:
    board = charts.get_dashboard()
    return render(request, "portal/dashboard.html", {"board": board, "summary": get_summary()})


@data_manager_required
@require_GET
def chart_svg(request: HttpRequest, name: str) -> HttpResponse:
    svg = charts.chart_svg(name)
    if svg is None:
        raise Http404("no such chart")
    # Not kept by the browser either (nccid.web.nostore): each is drawn once per dashboard
    # version in the process (charts.chart_svg), so asking again costs the version's query.
    return HttpResponse(svg, content_type="image/svg+xml")


PREVIEW_PIXELS = 1024  # the longest side of a held image's preview
REVIEW_PAGE_SIZE = 20  # held images per page of the review queue


@data_manager_required(identifying="imaging.held.list")
@require_GET
def review_page(request: HttpRequest) -> HttpResponse:
    """The held images, oldest first, a page at a time (each row loads its own preview)."""
    from nccid.imaging.services import held_images

    pages = paginate(request, held_images().order_by("received_at", "pk"), REVIEW_PAGE_SIZE,
                     label="Pages of held images")
    return render(request, "portal/review.html", {"pages": pages})


def _review_page_of(request: HttpRequest, **_) -> str:
    """The review queue's page a decision was sent from."""
    page = request.POST.get("page", "") or request.GET.get("page", "")
    back = reverse("figures:review")
    return f"{back}?page={page}" if page.isdigit() else back


# What each decision asks before it is made: neither can be undone from the portal.
DECISIONS = {
    "release": {"question": "Release image {pk} into the warehouse?",
                "warning": "Check it shows no names, NHS/CHI or hospital numbers, dates of "
                           "birth or other identifiers burned into the pixels (open it full "
                           "size). Once released it can reach researchers; only removing its "
                           "study takes it back.",
                "button": "Confirm release of image {pk}", "style": "",
                "done": "released into the warehouse"},
    "reject": {"question": "Reject image {pk}?",
               "warning": "This deletes it; it cannot be undone. If the site sends it again, "
                          "it is held for review again.",
               "button": "Confirm rejection of image {pk}", "style": "nhsuk-button--warning",
               "done": "rejected and deleted"},
}


@data_manager_required(signed_out_to=_review_page_of, identifying="imaging.held.decide")
@require_http_methods(["GET", "POST"])
def review_decide(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """GET (the queue's Release or Reject): the page asking to confirm the decision, so a slip
    decides nothing. POST (its Confirm): the decision, audited by the imaging services."""
    from nccid.imaging import services

    if action not in DECISIONS:
        raise Http404("no such action")
    held = held_or_404(pk)
    if request.method == "GET":
        return _ask_to_confirm(request, held, action)
    try:
        getattr(services, f"{action}_held")(held, request.user)
    except services.HeldDecisionError as exc:
        messages.error(request, f"Image {held.pk}: {exc}.")
    else:
        messages.success(request, f"Image {held.pk} from {held.site.code} {DECISIONS[action]['done']}.")
    return redirect(_review_page_of(request))  # the page it was on


def _ask_to_confirm(request: HttpRequest, held, action: str) -> HttpResponse:
    """The question before ``action`` on ``held``; an image decided meanwhile is answered as
    its Confirm would be (the error, on the queue's page)."""
    from nccid.imaging.models import HeldStatus

    if held.status != HeldStatus.HELD or not held.file_name:
        messages.error(request, f"Image {held.pk}: this image has already been decided.")
        return redirect(_review_page_of(request))
    decision = {key: text.format(pk=held.pk) for key, text in DECISIONS[action].items()}
    page = request.GET.get("page", "")
    return render(request, "portal/review_confirm.html", {
        "image": held, "action": action, "decision": decision,
        "page": page if page.isdigit() else "", "back": _review_page_of(request)})


@data_manager_required(identifying="imaging.held.view")
@require_GET
def review_image(request: HttpRequest, pk: int) -> HttpResponse:
    """A held image's first frame as a PNG, for the data manager deciding on it (audited)."""
    return held_preview(held_or_404(pk), request.user)


def held_or_404(pk: int):
    """The held image ``pk`` (with its site), or Http404."""
    from nccid.imaging.models import HeldImage

    held = HeldImage.objects.select_related("site").filter(pk=pk).first()
    if held is None:
        raise Http404("No such held image.")
    return held


def held_preview(held, user) -> HttpResponse:
    """The PNG of ``held`` for ``user`` (a data manager), or 415 saying why it cannot be
    shown; Http404 once it has been decided. Never cached: the pixels may show a name."""
    from nccid.imaging import services
    from nccid.research.dataset import preview_png

    try:
        dataset = services.held_image(held, user)
    except services.HeldDecisionError as exc:
        raise Http404(str(exc)) from exc
    try:
        response = HttpResponse(preview_png(dataset, PREVIEW_PIXELS), content_type="image/png")
    except Exception as exc:  # noqa: BLE001 - no pixels, or a compression nothing here decodes
        log.warning("held image %s cannot be previewed (%s)", held.pk, type(exc).__name__)
        response = HttpResponse(f"Image {held.pk} cannot be shown here ({type(exc).__name__}: "
                                "no pixels, or a compression this server cannot decode). "
                                "Reject it, or ask the site to send it uncompressed.",
                                status=415, content_type="text/plain; charset=utf-8")
    add_never_cache_headers(response)
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def vault_page(request: HttpRequest) -> HttpResponse:
    """Pseudonym + reason -> the NHS/CHI number, shown once in this response only.

    Every POST is audited, refused ones included (a form sent incomplete, another role).
    """
    from nccid.identity.service import VaultAccessDenied, reveal

    context: dict = {"errors": {}, "pseudonym": "", "reason": "", "number": None}
    status = 200
    if not request.user.may_open_vault:  # administrators neither: see accounts.models
        if request.method == "POST":
            try:  # refuses before any look-up, and audits the attempt
                reveal(request.user, request.POST.get("pseudonym", ""), request.POST.get("reason", ""))
            except VaultAccessDenied as exc:
                raise PermissionDenied(str(exc)) from exc
        if request.user.role == Role.ADMIN:  # told why, as on the other identifying pages
            raise Refused(ADMINS_MAY_NOT_REIDENTIFY)
        raise PermissionDenied("data managers only")
    if request.method == "POST":
        _vault_post(request, context)
        status = 400 if context["errors"] else 200
    response = render(request, "portal/vault.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _vault_post(request: HttpRequest, context: dict) -> None:
    """Fill ``context`` with the revealed number or the form's errors; refusals are audited."""
    from nccid.identity.service import (
        ReasonRequired,
        UnknownPseudonym,
        VaultAccessDenied,
        VaultEntryUnreadable,
        audit_refused_reveal,
        normalise_pseudonym,
        reveal,
    )

    pseudonym = normalise_pseudonym(request.POST.get("pseudonym", ""))
    reason = request.POST.get("reason", "").strip()
    context.update(_vault_form_shown_back(pseudonym, reason))
    errors = context["errors"]
    if pseudonym is None:
        errors["pseudonym"] = "Enter a pseudonym, like NCCID-ABCDEFGHIJKLMNOP"
    if not reason:
        errors["reason"] = "Enter the reason you need this NHS/CHI number"
    if errors:
        audit_refused_reveal(request.user, pseudonym or "", reason, "; ".join(errors.values()))
        return
    try:
        context["number"] = reveal(request.user, pseudonym, reason)
    except UnknownPseudonym:
        errors["pseudonym"] = "No vault entry for this pseudonym"
    except ReasonRequired as exc:  # a form error, not a refusal: caught before its base
        errors["reason"] = _sentence(exc)
    except VaultEntryUnreadable as exc:  # damaged, or another vault key: audited by reveal
        errors["pseudonym"] = _sentence(exc)
    except VaultAccessDenied as exc:
        raise PermissionDenied(str(exc)) from exc


def _vault_form_shown_back(pseudonym: str | None, reason: str) -> dict:
    """What the vault form may show back: what was typed may be an identifier, so only a
    well-formed pseudonym, and a reason only when it seems to hold none."""
    from nccid.identity.reasons import identifier_in_reason

    return {"pseudonym": pseudonym or "",
            "reason": "" if identifier_in_reason(reason) else reason}


def _sentence(exc: Exception) -> str:
    """An error's message as a sentence for an error summary (capital first letter)."""
    text = str(exc)
    return text[:1].upper() + text[1:]


def _act_on_confirmation(request: HttpRequest, context: dict, step: str, act,
                         interrupted=None) -> None:
    """The confirmation form of a removal page, if it was sent (``step``): ``act(reason)``,
    then the page says what was removed, or why not (a reason that may hold an identifier
    is not shown back).

    ``interrupted()`` says whether a failure part-way (the warehouse, the database) left
    the removal listed but not complete: the page then says so instead of failing."""
    from nccid.identity.reasons import identifier_in_reason
    from nccid.withdrawal.services import WithdrawalError

    if request.POST.get("step") != step:
        return
    context["reason"] = request.POST.get("reason", "").strip()
    try:
        context.update(step="done", removed=act(context["reason"]))
    except WithdrawalError as exc:
        context["errors"]["reason"] = _sentence(exc)
    except Exception:
        if interrupted is None or not interrupted():
            raise
        log.exception("a removal was interrupted part-way")
        context["errors"]["pseudonym"] = INTERRUPTED
    if identifier_in_reason(context["reason"]):
        context["reason"] = ""  # never rendered back


INTERRUPTED = ("The withdrawal was interrupted part-way (the warehouse or the database failed). "
               "Intake already refuses this patient. Withdraw the patient again to complete it.")


@never_cache
@data_manager_required(identifying="patient.look-up")
@require_http_methods(["GET", "POST"])
def withdraw_page(request: HttpRequest) -> HttpResponse:
    """Find a patient (NHS/CHI number or pseudonym), see what is held of them, withdraw them.

    The number typed is turned into the pseudonym at once and never rendered back. Every
    look-up is audited, found or not; a patient nothing in the database or the warehouse names
    (most likely a typing error) is refused without showing the pseudonym worked out."""
    from nccid.withdrawal.models import Withdrawal
    from nccid.withdrawal.services import (
        WithdrawalError,
        holdings,
        look_up,
        patient_pseudonym,
        withdraw,
    )

    context: dict = {"errors": {}, "step": "find", "reason": "",
                     "withdrawals": Withdrawal.objects.all()[:20]}
    status = 200
    if request.method == "POST":
        try:
            pseudonym = patient_pseudonym(request.POST.get("patient", ""))
            held = look_up(request.user, pseudonym)
        except WithdrawalError as exc:
            context["errors"]["patient"] = _sentence(exc)
        else:
            context.update(step="confirm", pseudonym=pseudonym, held=held)
            _act_on_confirmation(request, context, "withdraw",
                                 lambda reason: withdraw(request.user, pseudonym, reason),
                                 lambda: Withdrawal.objects.filter(pseudonym=pseudonym).exists())
            if "pseudonym" in context["errors"]:  # interrupted: show what is still held
                context["held"] = holdings(pseudonym)
            if context["step"] == "done":  # the result is a page of its own: a reload re-runs nothing
                return _withdrawn_page(request, Withdrawal.objects.get(pseudonym=pseudonym),
                                       context["held"].handed_out)
        status = 400 if context["errors"] else 200
    else:
        context.update(_withdrawal_done(request))
    return render(request, "portal/withdraw.html", context, status=status)  # never_cache: not kept


WITHDRAWN_KEY = "portal.withdrawn"  # the session's note of the last withdrawal's hand-outs


def _withdrawn_page(request: HttpRequest, withdrawal, handed_out) -> HttpResponse:
    """Redirect to the result of ``withdrawal`` (GET ``?done=<id>``). The research hand-outs
    it listed, found from data now deleted, are kept in the session for that page."""
    request.session[WITHDRAWN_KEY] = {"id": withdrawal.pk, "handed_out": [
        {"at": event.at.isoformat(), "username": event.username, "action": event.action,
         "sets": list(event.sets)} for event in handed_out]}
    return redirect(f"{reverse('figures:withdraw')}?done={withdrawal.pk}")


def _withdrawal_done(request: HttpRequest) -> dict:
    """The result page of a completed withdrawal (``?done=<id>``): its pseudonym and the counts
    it stored; nothing is removed or audited again. Empty (the find form) for an unknown id."""
    from nccid.withdrawal.models import Withdrawal

    done = _done_id(request)
    withdrawal = Withdrawal.objects.filter(pk=done, completed_at__isnull=False).first() if done else None
    if withdrawal is None:
        return {}
    noted = request.session.get(WITHDRAWN_KEY) or {}
    handed_out = [event | {"at": datetime.fromisoformat(event["at"])}
                  for event in noted.get("handed_out", ())] if noted.get("id") == withdrawal.pk else []
    return {"step": "done", "pseudonym": withdrawal.pseudonym, "removed": withdrawal.removed,
            "held": {"handed_out": handed_out}}


def _done_id(request: HttpRequest) -> int | None:
    done = request.GET.get("done", "")
    return int(done) if done.isdigit() and len(done) < 18 else None


AUDIT_PAGE_SIZE = 50
# The kinds of audited action (the part before the first dot), as the filter offers them.
AUDIT_KINDS = {
    "vault": "Key vault (reveals, re-keys)",
    "patient": "Patients (look-ups, withdrawals)",
    "study": "Studies (look-ups, removals)",
    "clinical": "Clinical uploads",
    "imaging": "Images (held, pending)",
    "research": "Research access",
    "identity": "Linkage files",
    "token": "API tokens (issued, revoked)",
    "account": "Accounts (added, access changed, passwords set, deleted)",
    "site": "Sites (added, changed, deleted)",
    "withdrawal": "Withdrawal sweeps",
    "audit": "Audit log views",
}


@never_cache
@data_manager_required
@require_GET
def audit_page(request: HttpRequest) -> HttpResponse:
    """The audit log, newest first, by kind of action, account and pseudonym, 50 a page."""
    from nccid.accounts.models import AuditEvent

    kind = request.GET.get("kind", "")
    username = request.GET.get("user", "").strip()
    pseudonym = request.GET.get("pseudonym", "").strip().upper()
    events = AuditEvent.objects.order_by("-at", "-id")
    errors = _audit_filter_errors(username, pseudonym)
    if errors:  # a patient number typed into a filter: refused, never shown back
        username = "" if "user" in errors else username
        pseudonym = "" if "pseudonym" in errors else pseudonym
        events = events.none()
    if "\x00" in username + pseudonym:  # in no account or pseudonym (PostgreSQL refuses it)
        events = events.none()
    if kind in AUDIT_KINDS:
        events = events.filter(action__startswith=kind + ".")
    if username:
        events = events.filter(username__startswith=username)
    if pseudonym:
        events = events.filter(pseudonym=pseudonym)
    pages = paginate(request, events, AUDIT_PAGE_SIZE, label="Pages of the audit log")
    return render(request, "portal/audit.html", {
        "pages": pages, "kinds": AUDIT_KINDS, "kind": kind if kind in AUDIT_KINDS else "",
        "user_filter": username, "pseudonym": pseudonym, "errors": errors,
        "filtered": bool(kind in AUDIT_KINDS or username or pseudonym or errors)},
        status=400 if errors else 200)


def _audit_filter_errors(username: str, pseudonym: str) -> dict[str, str]:
    """Field id -> error for a filter holding an NHS/CHI number (the audit log names
    patients by pseudonym only); the messages never repeat what was typed."""
    from nccid.identity.numbers import looks_like_patient_number

    errors = {}
    if looks_like_patient_number(username):
        errors["user"] = "That looks like an NHS/CHI number: enter a user name"
    if looks_like_patient_number(pseudonym):
        errors["pseudonym"] = ("That looks like an NHS/CHI number: the audit log names patients "
                               "by pseudonym only (NCCID- and 16 letters or digits)")
    return errors


@never_cache
@data_manager_required(identifying="study.look-up")
@require_http_methods(["GET", "POST"])
def remove_study_page(request: HttpRequest) -> HttpResponse:
    """Find a study by UID (stored or as sent), see what is held of it, remove it. Every
    look-up is audited (``study.look-up``, by the stored UID): it names the patient."""
    from nccid.withdrawal.models import StudyWithdrawal
    from nccid.withdrawal.services import WithdrawalError, look_up_study, remove_study

    context: dict = {"errors": {}, "step": "find", "reason": "",
                     "removals": StudyWithdrawal.objects.all()[:20]}
    if request.method == "POST":
        try:
            held = look_up_study(request.user, request.POST.get("study", ""))
        except WithdrawalError as exc:
            context["errors"]["study"] = _sentence(exc)
        else:
            study_uid = held.study_uid
            context.update(step="confirm", study_uid=study_uid, held=held)
            _act_on_confirmation(request, context, "remove",
                                 lambda reason: remove_study(request.user, study_uid, reason))
            if context["step"] == "done":  # the result is a page of its own: a reload re-runs nothing
                removal = StudyWithdrawal.objects.get(study_uid=study_uid)
                return redirect(f"{reverse('figures:remove_study')}?done={removal.pk}")
    else:
        context.update(_study_removal_done(request))
    return render(request, "portal/remove_study.html", context,
                  status=400 if context["errors"] else 200)


def _study_removal_done(request: HttpRequest) -> dict:
    """The result page of a completed study removal (``?done=<id>``): the study's UID and the
    counts it stored. Empty (the find form) for an unknown id."""
    from nccid.withdrawal.models import StudyWithdrawal

    done = _done_id(request)
    removal = StudyWithdrawal.objects.filter(pk=done, completed_at__isnull=False).first() if done else None
    if removal is None:
        return {}
    return {"step": "done", "study_uid": removal.study_uid, "removed": removal.removed}
