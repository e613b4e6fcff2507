"""Who may do what on the portal pages. One place, so every view asks the same questions."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from nccid.accounts.models import Role, Site, User


class Refused(PermissionDenied):
    """A 403 whose reason is written for the person refused: the portal's 403 page shows it
    (a bare PermissionDenied's words are for the log)."""


def can_upload(user: User) -> bool:
    """Site uploaders upload for their own site; administrators may act for any site."""
    if not user.is_authenticated or not user.is_active:
        return False
    return (user.role == Role.UPLOADER and user.site_id is not None) or user.role == Role.ADMIN


def sees_all_sites(user: User) -> bool:
    return user.is_authenticated and user.role in (Role.DATA_MANAGER, Role.ADMIN)


def upload_site_for(user: User, chosen: Site | None = None) -> Site:
    """The site an upload is made for: an uploader's own, or the one an administrator chose."""
    if user.role == Role.UPLOADER:
        return user.site
    if user.role == Role.ADMIN and chosen is not None:
        return chosen
    raise Http404("no site to upload for")


def check_site_access(user: User, site_id: int) -> None:
    """Raise 404 (not 403: do not confirm the object exists) unless the user may see that site."""
    if sees_all_sites(user):
        return
    if user.role != Role.UPLOADER or user.site_id is None or user.site_id != site_id:
        raise Http404("not found")  # a researcher attached to a site sees none of its uploads


def visible_site(user: User, code: str | None) -> Site | None:
    """The site whose history a page shows: one's own, or any for data managers and admins."""
    if sees_all_sites(user):
        if code:
            site = Site.objects.filter(code=code.upper()).first()
            if site is None:
                raise Http404("no such site")
            return site
        return user.site
    return user.site


def check_can_act_on(user: User, site_id: int) -> None:
    """Confirming or cancelling an upload: its own site's uploader, or an administrator. A data
    manager sees every upload, so is told (403) rather than shown a 404 that hides nothing."""
    if user.role == Role.ADMIN:
        return
    if sees_all_sites(user):
        raise Refused("Data managers look at uploads; the site's uploader confirms or "
                      "cancels them.")
    if not can_upload(user) or user.site_id != site_id:
        raise Http404("not found")


def signed_in_or_back_to(page: Callable[..., str]):
    """A view decorator like ``login_required``, for actions (POST only): signed out, the user
    signs in and comes back to ``page(request, **view_kwargs)``, the page the action was pressed
    on, never to the action's own URL (the browser would GET it after signing in: 405). They
    then see the state it is in and press again: a replayed request never acts."""

    def decorator(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(page(request, **kwargs))
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
