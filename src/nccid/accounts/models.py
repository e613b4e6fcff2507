"""Sites, users and the audit log. No identifier of a patient is ever stored here."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models


class SplitRule(models.TextChoices):
    TRAINING = "training", "All patients to the training set"
    VALIDATION = "validation", "All patients to the validation set"
    SPLIT = "split", "Split by the configured validation percentage"


class Site(models.Model):
    """A submitting centre: one account group, one calling AE title for the DICOM node."""

    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)
    ae_title = models.CharField(max_length=16, unique=True, null=True, blank=True)
    split_rule = models.CharField(max_length=16, choices=SplitRule.choices, default=SplitRule.SPLIT)
    # Units the site reports in, by field name; checked in clean() against the templates.
    declared_units = models.JSONField(
        default=dict, blank=True,
        help_text='Units the site reports in, by field name: {"d_dimer": "ng/mL", "crp": '
                  '"mg/dL"}; {} for the templates\' own. Values are converted from these unless '
                  "a sheet's header names its unit.")
    # How the site writes dates in spreadsheets: "DMY" (UK default) or "MDY" (historical template).
    date_format = models.CharField(max_length=3, default="DMY")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"

    def clean(self) -> None:
        """Declared units the templates take, stored by field name in their spelling: a key
        naming no field was never read, and a unit a column does not take refused every
        upload of the site."""
        from nccid.clinical.declared_units import DeclaredUnitsError, checked_declared_units

        try:
            self.declared_units = checked_declared_units(self.declared_units)
        except DeclaredUnitsError as exc:
            raise ValidationError({"declared_units": exc.problems}) from exc


class Role(models.TextChoices):
    UPLOADER = "uploader", "Site uploader"
    DATA_MANAGER = "data-manager", "Data manager"
    RESEARCHER = "researcher", "Researcher"
    ADMIN = "admin", "Administrator"


# The sets a researcher may be granted: the validation set is never handed out.
GRANTABLE_SETS = ("training",)


def validate_research_sets(value) -> None:
    """A list of grantable set names (a data manager types it in the admin as JSON)."""
    if not isinstance(value, list) or any(s not in GRANTABLE_SETS for s in value):
        raise ValidationError(
            'Write a list of the sets granted: ["training"], or [] for none. Only the training '
            "set is handed out to researchers.")


class User(AbstractUser):
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.UPLOADER)
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.PROTECT, related_name="users")
    # What a researcher (or administrator) may query: nothing until a data manager grants a
    # set, so emptying the list revokes access (migration 0003 granted training to the
    # accounts that had relied on an empty list meaning training).
    research_sets = models.JSONField(
        default=list, blank=True, validators=[validate_research_sets],
        help_text='Sets this account may query as a researcher: ["training"] grants the '
                  "training set; [] grants none (access is revoked).")

    @property
    def is_data_manager(self) -> bool:
        return self.role in (Role.DATA_MANAGER, Role.ADMIN)

    @property
    def may_reidentify(self) -> bool:
        """Only data managers turn an identifier into a pseudonym or see identifying content:
        the key vault (issue 2), finding a patient by number or a study by the UID its site
        sent, and the images held because text may be burned in. An administrator, who may
        also query research data, must not be able to re-identify what they query."""
        return self.role == Role.DATA_MANAGER

    @property
    def may_open_vault(self) -> bool:
        return self.may_reidentify

    @property
    def is_uploader(self) -> bool:
        return self.role == Role.UPLOADER

    @property
    def is_researcher(self) -> bool:
        return self.role in (Role.RESEARCHER, Role.ADMIN)

    # A sign-in that re-hashes the password (a hasher's new parameters) saves the same
    # password: the audit of accounts (signals.py) does not take it for a password change.
    def check_password(self, raw_password) -> bool:
        self._rehashing = True
        try:
            return super().check_password(raw_password)
        finally:
            self._rehashing = False

    async def acheck_password(self, raw_password) -> bool:
        self._rehashing = True
        try:
            return await super().acheck_password(raw_password)
        finally:
            self._rehashing = False

    def allowed_sets(self) -> list[str]:
        """Warehouse sets this user was granted and may query or export: none unless granted.
        The validation set is never handed out, whatever the list holds."""
        return [s for s in (self.research_sets or []) if s in GRANTABLE_SETS]


# Why an administrator is refused what only data managers may do (``User.may_reidentify``).
ADMINS_MAY_NOT_REIDENTIFY = ("data managers only: an administrator, who may query research data, "
                             "must not re-identify")


def reidentifying_refused(user, action: str, doing: str = "do this") -> str | None:
    """Why ``user`` may not ``doing`` (an action only data managers take: it turns an identifier
    into a pseudonym or shows identifying content), audited as ``<action>.denied``; None when
    they may. The event names no pseudonym: one worked out from a number typed would tell it."""
    if getattr(user, "is_active", False) and getattr(user, "may_reidentify", False):
        return None
    cause = (ADMINS_MAY_NOT_REIDENTIFY if getattr(user, "role", None) == Role.ADMIN
             else f"only data managers may {doing}")
    audit(user, f"{action}.denied", cause=cause)
    return cause


class ApiToken(models.Model):
    """A bearer token for the JSON API; only its SHA-256 and its first characters are stored."""

    # "nccid_" and 4 of its 43 random characters: enough to tell which token a script holds,
    # too few to matter (the other 39 stay secret).
    PREFIX_LENGTH = 10

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, blank=True)  # empty for tokens issued before it
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user.username}: {self.name} ({self.prefix or 'nccid_'}…)"

    @staticmethod
    def digest_of(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user: User, name: str) -> tuple[ApiToken, str]:
        token = "nccid_" + secrets.token_urlsafe(32)
        made = cls.objects.create(user=user, name=name, digest=cls.digest_of(token),
                                  prefix=token[:cls.PREFIX_LENGTH])
        return made, token


class AuditEvent(models.Model):
    """Who did what, when and why. Holds pseudonyms and filters, never identifiers."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    pseudonym = models.CharField(max_length=32, blank=True)
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]


_audited_from: ContextVar[str] = ContextVar("nccid_audited_from", default="")


@contextmanager
def audited_from(route: str) -> Iterator[None]:
    """Events audited inside name ``route`` after their actor, ``rita (cli:root)``: the
    account a command signed in as and the operating-system user who ran it."""
    token = _audited_from.set(route)
    try:
        yield
    finally:
        _audited_from.reset(token)


def audit(user_or_name, action: str, *, pseudonym: str = "", reason: str = "", **detail) -> AuditEvent:
    """Record an audited action. ``detail`` must hold no identifier (callers pass filters, counts)."""
    username = getattr(user_or_name, "username", None) or str(user_or_name)
    route = _audited_from.get()
    if route and username != route:
        username = f"{username[:AuditEvent.username.field.max_length - len(route) - 3]} ({route})"
    return AuditEvent.objects.create(
        username=username, action=action, pseudonym=pseudonym, reason=reason, detail=detail
    )
