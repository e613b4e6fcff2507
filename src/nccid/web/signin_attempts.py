"""What django-axes keeps of a failed sign-in: enough to lock guessing out, nothing typed.

A failed sign-in is a row of ``axes_accessattempt`` (in the main database, so the lock holds
across the portal's workers). Axes would keep the username and the request's query and form
data as typed, and someone may type an NHS or hospital number where the username goes, or
follow a link whose query names one (``/login/?next=/audit/%3Fuser%3D...``). So:

- the username is kept as typed only when it names an account; any other text is kept as a
  keyed hash of it, which counts repeated guesses of one name just as well;
- the query and form data keep their parameter names, never their values.

Rows expire: axes deletes every row older than ``AXES_COOLOFF_TIME`` at each sign-in, failed
or not, and ``nccid`` keeps no other copy.
"""

from __future__ import annotations

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, QueryDict
from django.utils.crypto import salted_hmac

UNKNOWN_PREFIX = "unknown-"  # then a keyed hash of what was typed
MASKED = "*"
_SALT = "nccid.web.signin_attempts.username"


def attempted_username(request: HttpRequest | None, credentials: dict | None = None) -> str | None:
    """The username axes records and locks by (``AXES_USERNAME_CALLABLE``): as typed when an
    account has it, else ``unknown-`` and a keyed hash of it; None when none was typed."""
    field = settings.AXES_USERNAME_FORM_FIELD
    if credentials:
        typed = credentials.get(field)
    else:
        typed = getattr(request, "POST", {}).get(field) if request is not None else None
    if not typed:
        return None
    if get_user_model().objects.filter(username=typed).exists():
        return typed
    return UNKNOWN_PREFIX + salted_hmac(_SALT, typed).hexdigest()[:32]


def _names_only(data: QueryDict) -> QueryDict:
    masked = QueryDict(mutable=True)
    for name in data:
        masked[name] = MASKED
    return masked


class AttemptHandler(AxesDatabaseHandler):
    """The database handler (``AXES_HANDLER``), recording a failure without the values of the
    request's query and form: axes writes ``request.GET`` and ``request.POST`` into the row,
    so they are masked while it does."""

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        if request is None:
            return super().user_login_failed(sender, credentials, request, **kwargs)
        query, form = request.GET, request.POST
        request.GET, request.POST = _names_only(query), _names_only(form)
        try:
            return super().user_login_failed(sender, credentials, request, **kwargs)
        finally:
            request.GET, request.POST = query, form
