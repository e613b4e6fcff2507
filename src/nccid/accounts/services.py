"""Site and account management: one place for the CLI, the portal and the API."""

from __future__ import annotations

import re

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from .models import Role, Site, SplitRule, User

_SITE_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,15}$")
_AE_TITLE = re.compile(r"^[ -~]{1,16}$")


class AccountError(ValueError):
    pass


def add_site(code: str, name: str, ae_title: str | None = None,
             split: str = SplitRule.SPLIT) -> Site:
    code = code.strip().upper()
    if not _SITE_CODE.match(code):
        raise AccountError(f"site code {code!r}: use 1-16 capital letters, digits, '-' or '_'")
    if split not in SplitRule.values:
        raise AccountError(f"split must be one of {', '.join(SplitRule.values)}, not {split!r}")
    if ae_title is not None:
        ae_title = ae_title.strip()
        if not _AE_TITLE.match(ae_title) or "\\" in ae_title:
            raise AccountError(f"AE title {ae_title!r}: 1-16 printable characters, no backslash")
        clash = Site.objects.filter(ae_title=ae_title).exclude(code=code).first()
        if clash:
            raise AccountError(f"AE title {ae_title!r} already belongs to site {clash.code}")
    if not name or not name.strip():
        raise AccountError("a site needs a name (--name)")
    if Site.objects.filter(code=code).exists():
        raise AccountError(f"site {code} already exists")
    try:
        with transaction.atomic():
            return Site.objects.create(code=code, name=name.strip(), ae_title=ae_title,
                                       split_rule=split)
    except IntegrityError as exc:  # a concurrent add of the same code or AE title
        raise AccountError(f"site {code} or AE title {ae_title!r} already exists") from exc


def add_user(username: str, role: str, password: str, site_code: str | None = None,
             email: str = "") -> User:
    if role not in Role.values:
        raise AccountError(f"role must be one of {', '.join(Role.values)}, not {role!r}")
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
    user = User(username=username, role=role, site=site, email=email)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise AccountError("password rejected: " + " ".join(exc.messages)) from exc
    user.set_password(password)
    user.is_staff = role in (Role.DATA_MANAGER, Role.ADMIN)
    user.is_superuser = role == Role.ADMIN
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # a concurrent add of the same username
        raise AccountError(f"user {username!r} already exists") from exc
    return user
