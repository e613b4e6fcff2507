"""Every change to an account's password or to what it may do is audited at the model, whatever
made it: Django's ``changepassword`` (``nccid manage changepassword``) or ``createsuperuser``,
a Django shell, a fixture loaded, or a route added later. The vault trusts a data manager's sign-in, so its audit trail
names a person only if nobody could set that person's password unrecorded.

The routes that audit their own changes (the admin site, ``nccid user add``; they also know
the groups and permissions saved after the row) say so with ``audited_by_caller()``, so a
change is recorded once. A change no route names an actor for is recorded under the operating
system user running the process (``cli:<name>``), or ``web:unnamed`` in a web request.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.core.signals import request_finished, request_started
from django.db.models.signals import m2m_changed, post_save, pre_delete, pre_save

_actor: ContextVar[str | None] = ContextVar("nccid_account_actor", default=None)
_caller_audits: ContextVar[bool] = ContextVar("nccid_account_caller_audits", default=False)
_in_request: ContextVar[bool] = ContextVar("nccid_in_request", default=False)

# The fields whose change is audited (``services.account_state`` reads them), and the password.
WATCHED = frozenset({"username", "role", "site", "research_sets", "is_active", "is_staff",
                     "is_superuser", "password"})
_M2M_BEFORE = {"pre_add": "post_add", "pre_remove": "post_remove", "pre_clear": "post_clear"}


@contextmanager
def acting_as(actor) -> Iterator[None]:
    """Changes to accounts made inside are audited under ``actor`` (an account or a name)."""
    token = _actor.set(getattr(actor, "username", None) or str(actor))
    try:
        yield
    finally:
        _actor.reset(token)


@contextmanager
def audited_by_caller() -> Iterator[None]:
    """Changes to accounts made inside are audited by the caller (not here as well)."""
    token = _caller_audits.set(True)
    try:
        yield
    finally:
        _caller_audits.reset(token)


def current_actor() -> str:
    """Who is changing an account: the actor a route named, else the process's OS user."""
    named = _actor.get()
    if named:
        return named
    if _in_request.get():
        return "web:unnamed"
    return f"cli:{_os_user()}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (a container) and no $USER
        return f"uid {os.getuid()}"


def _stored_before(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """What the account could do, and its password hash, as stored before this save."""
    instance._audit_before = None
    if _caller_audits.get() or instance.pk is None:
        return
    if update_fields is not None and not WATCHED & set(update_fields):
        return  # a sign-in's last_login, say
    from .services import account_state

    stored = sender.objects.filter(pk=instance.pk).select_related("site").first()
    if stored is not None:
        instance._audit_before = (account_state(stored), stored.password)


def _audit_saved(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    from .services import audit_account, audit_password_set

    before, instance._audit_before = getattr(instance, "_audit_before", None), None
    if _caller_audits.get():
        return
    if created:
        audit_account(current_actor(), None, instance)
        return
    if before is None:
        return
    state, password = before
    audit_account(current_actor(), state, instance)
    if instance.password != password and not getattr(instance, "_rehashing", False):
        audit_password_set(current_actor(), instance)


def _audit_deleted(sender, instance, **kwargs) -> None:
    from .services import audit_account_deleted

    if not _caller_audits.get():
        audit_account_deleted(current_actor(), instance)


def _audit_groups_or_permissions(sender, instance, action, reverse, pk_set=None, **kwargs) -> None:
    """A group or permission given to or taken from accounts (either side of the relation)."""
    from .models import User
    from .services import account_state, audit_account

    if _caller_audits.get():
        return
    if action in _M2M_BEFORE:
        if not reverse:
            accounts = [instance]
        elif pk_set is None:  # cleared from the group's or permission's side
            accounts = list(instance.user_set.all())
        else:
            accounts = list(User.objects.filter(pk__in=pk_set))
        instance._audit_m2m_before = {a.pk: account_state(a) for a in accounts}
    elif action in _M2M_BEFORE.values():
        before = instance.__dict__.pop("_audit_m2m_before", {})
        for account in User.objects.filter(pk__in=before).select_related("site"):
            audit_account(current_actor(), before[account.pk], account)


def _request_started(**kwargs) -> None:
    _in_request.set(True)


def _request_finished(**kwargs) -> None:
    _in_request.set(False)


def connect() -> None:
    """Connect the receivers (``AccountsConfig.ready``)."""
    from .models import User

    pre_save.connect(_stored_before, sender=User, dispatch_uid="nccid.accounts.before")
    post_save.connect(_audit_saved, sender=User, dispatch_uid="nccid.accounts.saved")
    pre_delete.connect(_audit_deleted, sender=User, dispatch_uid="nccid.accounts.deleted")
    for through in (User.groups.through, User.user_permissions.through):
        m2m_changed.connect(_audit_groups_or_permissions, sender=through,
                            dispatch_uid=f"nccid.accounts.m2m.{through.__name__}")
    request_started.connect(_request_started, dispatch_uid="nccid.accounts.request_started")
    request_finished.connect(_request_finished, dispatch_uid="nccid.accounts.request_finished")
