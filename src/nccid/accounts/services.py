"""Site and account management: one place for the CLI, the portal and the API."""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from .models import GRANTABLE_SETS, ApiToken, Role, Site, SplitRule, User, audit
from .signals import audited_by_caller

_SITE_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,15}$")
_AE_TITLE = re.compile(r"^[ -~]{1,16}$")


class AccountError(ValueError):
    pass


def checked_site_code(code: str) -> str:
    """The code as stored (capitals), or AccountError: the CLI's and the admin site's rule."""
    code = code.strip().upper()
    if not _SITE_CODE.match(code):
        raise AccountError(f"site code {code!r}: use 1-16 capital letters, digits, '-' or '_'")
    return code


def checked_ae_title(ae_title: str) -> str:
    """The AE title as stored, or AccountError: DICOM's AE VR (16 printable characters, no
    backslash, which separates values), as the node compares calling AE titles."""
    ae_title = ae_title.strip()
    if not _AE_TITLE.match(ae_title) or "\\" in ae_title:
        raise AccountError(f"AE title {ae_title!r}: 1-16 printable characters, no backslash")
    return ae_title


def add_site(code: str, name: str, ae_title: str | None = None,
             split: str = SplitRule.SPLIT, *, actor: str = "system") -> Site:
    """A new site; audited as ``site.add`` by ``actor``."""
    code = checked_site_code(code)
    if split not in SplitRule.values:
        raise AccountError(f"split must be one of {', '.join(SplitRule.values)}, not {split!r}")
    if ae_title is not None:
        ae_title = checked_ae_title(ae_title)
        clash = Site.objects.filter(ae_title=ae_title).exclude(code=code).first()
        if clash:
            raise AccountError(f"AE title {ae_title!r} already belongs to site {clash.code}")
    if not name or not name.strip():
        raise AccountError("a site needs a name (--name)")
    if Site.objects.filter(code=code).exists():
        raise AccountError(f"site {code} already exists")
    try:
        with transaction.atomic():
            site = Site.objects.create(code=code, name=name.strip(), ae_title=ae_title,
                                       split_rule=split)
            audit_site(actor, None, site)
            return site
    except IntegrityError as exc:  # a concurrent add of the same code or AE title
        raise AccountError(f"site {code} or AE title {ae_title!r} already exists") from exc


def add_user(username: str, role: str, password: str, site_code: str | None = None,
             email: str = "", research_sets: Sequence[str] = (), *, actor: str = "system") -> User:
    """A new account; a researcher or administrator may query only the ``research_sets``
    granted here (none when none is given: a data manager grants them later). Audited as
    ``account.add`` by ``actor``."""
    if role not in Role.values:
        raise AccountError(f"role must be one of {', '.join(Role.values)}, not {role!r}")
    research_sets = list(dict.fromkeys(research_sets))  # each once, in the order given
    _check_research_sets(role, research_sets)
    site = None
    if site_code:
        site = Site.objects.filter(code=site_code.strip().upper()).first()
        if site is None:
            raise AccountError(f"no site with code {site_code!r} (add it with 'nccid site add')")
    if role == Role.UPLOADER and site is None:
        raise AccountError("a site uploader needs --site CODE")
    try:
        User.username_validator(username)
    except ValidationError as exc:
        raise AccountError(f"username {username!r}: letters, digits and @ . + - _ only") from exc
    if User.objects.filter(username=username).exists():
        raise AccountError(f"user {username!r} already exists")
    user = User(username=username, role=role, site=site, email=email, research_sets=research_sets)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise AccountError("password rejected: " + " ".join(exc.messages)) from exc
    user.set_password(password)
    user.is_staff = role in (Role.DATA_MANAGER, Role.ADMIN)
    user.is_superuser = role == Role.ADMIN
    try:
        with transaction.atomic(), audited_by_caller():
            user.save()
            audit_account(actor, None, user)
    except IntegrityError as exc:  # a concurrent add of the same username
        raise AccountError(f"user {username!r} already exists") from exc
    return user


def _check_research_sets(role: str, research_sets: list[str]) -> None:
    unknown = [s for s in research_sets if s not in GRANTABLE_SETS]
    if unknown:
        raise AccountError(f"research set {unknown[0]!r} cannot be granted: only "
                           f"{', '.join(GRANTABLE_SETS)} is handed out to researchers")
    if research_sets and role not in (Role.RESEARCHER, Role.ADMIN):
        raise AccountError("research sets are granted to researchers and administrators only")


# ---------------------------------------------------------------- audit of accounts

def account_state(user: User) -> dict:
    """What an account may do, as its audit events record it: its name, role, site, research
    sets, flags and Django groups and permissions; never its password or hash."""
    permissions = user.user_permissions.select_related("content_type")
    return {"username": user.username, "role": user.role,
            "site": user.site.code if user.site_id else None,
            "research_sets": list(user.research_sets or []), "is_active": user.is_active,
            "is_staff": user.is_staff, "is_superuser": user.is_superuser,
            "groups": sorted(user.groups.values_list("name", flat=True)),
            "user_permissions": sorted(f"{p.content_type.app_label}.{p.codename}"
                                       for p in permissions)}


def audit_account(actor, before: dict | None, user: User) -> None:
    """Audit an account made (``before`` is None: ``account.add`` with what it may do) or
    changed (``account.change``, each changed field as [old, new]; nothing if none did)."""
    after = account_state(user)
    account = after.pop("username")
    if before is None:
        audit(actor, "account.add", account=account, **after)
        return
    changes = _changes(before, {"username": account, **after})
    if changes:
        audit(actor, "account.change", account=account, changes=changes)


def audit_account_deleted(actor, user: User) -> None:
    """Audit an account about to be deleted, with what it could do and its API tokens (which
    go with it)."""
    state = account_state(user)
    audit(actor, "account.delete", account=state.pop("username"),
          tokens=user.api_tokens.count(), **state)


def audit_password_set(actor, user: User) -> None:
    """Audit a password set for an account by someone (never the password or its hash):
    ``usable`` is false when the account was left without one (it cannot sign in)."""
    audit(actor, "account.password", account=user.username, usable=user.has_usable_password())


def _changes(before: dict, after: dict) -> dict:
    """Each field whose value differs, as [old, new]."""
    return {name: [before.get(name), value] for name, value in after.items()
            if before.get(name) != value}


# ---------------------------------------------------------------- audit of sites

# What a site's audit events record: its AE title picks the PACS the DICOM node takes its
# images from, its split rule the research set its patients go to.
SITE_FIELDS = ("code", "name", "ae_title", "split_rule", "declared_units", "date_format")


def site_state(site: Site) -> dict:
    return {field: getattr(site, field) for field in SITE_FIELDS}


def audit_site(actor, before: dict | None, site: Site) -> None:
    """Audit a site made (``before`` is None: ``site.add`` with its fields) or changed
    (``site.change``, each changed field as [old, new]; nothing if none did), by its code."""
    after = site_state(site)
    if before is None:
        audit(actor, "site.add", site=after.pop("code"), **after)
        return
    changes = _changes(before, after)
    if changes:
        audit(actor, "site.change", site=site.code, changes=changes)


def audit_site_deleted(actor, site: Site) -> None:
    """Audit a site about to be deleted, with what it was."""
    state = site_state(site)
    audit(actor, "site.delete", site=state.pop("code"), **state)


# ---------------------------------------------------------------- API tokens

def _account(username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise AccountError(f"no user {username!r}")
    return user


def issue_token(username: str, name: str, actor: str) -> tuple[ApiToken, str]:
    """A new token for an account: the token itself is returned once and never kept."""
    made, token = ApiToken.issue(_account(username), name)
    audit(actor, "token.issue", account=username, token=made.pk, name=name, prefix=made.prefix)
    return made, token


def tokens_of(username: str | None = None) -> list[ApiToken]:
    """Every account's tokens, or one account's, by account then age."""
    found = ApiToken.objects.select_related("user").order_by("user__username", "pk")
    return list(found.filter(user=_account(username)) if username is not None else found)


def revoke_tokens(token_ids: list[int], actor: str, username: str | None = None) -> list[ApiToken]:
    """Delete tokens by number, or all of one account's (``username`` alone); audited, one
    event per token. A number that is no token (or not that account's) revokes nothing."""
    if not token_ids and username is None:
        raise AccountError("say which tokens: their numbers (see 'nccid user token list') "
                           "or --all-of USERNAME")
    found = ApiToken.objects.select_related("user").order_by("pk")
    if username is not None:
        found = found.filter(user=_account(username))
    if token_ids:
        found = found.filter(pk__in=token_ids)
    chosen = list(found)
    missing = sorted(set(token_ids) - {token.pk for token in chosen})
    if missing:
        owner = f" of {username!r}" if username is not None else ""
        raise AccountError(f"no token{owner} numbered {', '.join(map(str, missing))} "
                           "(see 'nccid user token list'): nothing was revoked")
    with transaction.atomic():
        for token in chosen:
            revoke_token(token, actor)
    return chosen


def revoke_token(token: ApiToken, actor) -> None:
    """Delete one token (the API refuses it at once) and audit who did."""
    audit(actor, "token.revoke", account=token.user.username, token=token.pk, name=token.name,
          prefix=token.prefix)
    ApiToken.objects.filter(pk=token.pk).delete()  # not token.delete(): the caller keeps its number
