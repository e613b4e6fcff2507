"""``nccid site …`` and ``nccid user …``."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from nccid.cli.common import UserError, console, read_password, setup_django

site_app = typer.Typer(help="Submitting sites (centres).", no_args_is_help=True)
user_app = typer.Typer(help="Portal and API accounts.", no_args_is_help=True)


def _plain(value: str) -> Text:
    """A table cell shown as typed: a token or site name may hold brackets ("nightly [prod]")
    that Rich would read as markup, dropping them or failing on a stray "[/]"."""
    return Text(value)


@site_app.command("add")
def site_add(
    code: str,
    name: Annotated[str, typer.Option("--name", help="The site's full name.")],
    ae_title: Annotated[str | None, typer.Option("--ae-title", help="Calling AE title of the site's PACS.")] = None,
    split: Annotated[str, typer.Option("--split", help="training, validation or split.")] = "split",
) -> None:
    """Register a site (and the AE title its PACS sends from)."""
    setup_django()
    from nccid.accounts.services import AccountError, add_site

    try:
        site = add_site(code, name, ae_title, split, actor=_cli_actor())
    except AccountError as exc:
        raise UserError(str(exc)) from exc
    console.print(f"Added site {site.code} ({site.name}), AE title {site.ae_title or '-'}, "
                  f"split {site.split_rule}", markup=False)


@site_app.command("list")
def site_list() -> None:
    """List the sites."""
    setup_django()
    from nccid.accounts.models import Site

    table = Table("Code", "Name", "AE title", "Split")
    for site in Site.objects.all():
        table.add_row(_plain(site.code), _plain(site.name), _plain(site.ae_title or "-"),
                      site.split_rule)
    console.print(table)


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option("--role", help="uploader, data-manager, researcher or admin.")],
    site: Annotated[str | None, typer.Option("--site", help="Site code (required for uploaders).")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")] = False,
    email: Annotated[str, typer.Option("--email", help="Contact address (data managers' is shown to sites on the guidance page).")] = "",
    research_set: Annotated[list[str] | None, typer.Option(
        "--research-set", help="A set a researcher or administrator may query (training). "
        "Without it none is granted: grant one later in the admin site.")] = None,
) -> None:
    """Create an account."""
    setup_django()
    from nccid.accounts.services import AccountError, add_user

    password = read_password(password_stdin)
    try:
        user = add_user(username, role, password, site, email, research_set or (),
                        actor=_cli_actor())
    except AccountError as exc:
        raise UserError(str(exc)) from exc
    console.print(f"Added {user.get_role_display().lower()} {user.username}"
                  + (f" at {user.site.code}" if user.site else "") + _sets_said(user))


def _sets_said(user) -> str:
    """What a new researcher may query, so one made without a set is not mistaken for ready."""
    if not user.is_researcher:
        return ""
    if user.research_sets:
        return f" (may query: {', '.join(user.research_sets)})"
    return " (no research set granted yet: it may query nothing until one is)"


@user_app.command("list")
def user_list() -> None:
    """List accounts and their roles."""
    setup_django()
    from nccid.accounts.models import User

    table = Table("Username", "Role", "Site", "Active")
    for user in User.objects.select_related("site").order_by("username"):
        table.add_row(user.username, user.role, user.site.code if user.site else "-",
                      "yes" if user.is_active else "no")
    console.print(table)


class _IssueByDefault(TyperGroup):
    """``nccid user token USERNAME`` stays the way to issue one: arguments that do not start
    with a subcommand (a username, or ``--name ci`` before it) are ``issue``'s. An account
    named like a subcommand (``list``) is issued one with ``token issue list``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["issue", *args]
        return super().parse_args(ctx, args)


token_app = typer.Typer(cls=_IssueByDefault, no_args_is_help=True, help=(
    "API tokens: issue one (nccid user token USERNAME [--name NAME]; for an account named "
    "like a subcommand: nccid user token issue USERNAME), list them, revoke them. A token is "
    "shown once; only its digest and first characters are kept."))


def _cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}" if moment else "never"


@token_app.command("issue")
def token_issue(username: str, name: Annotated[str, typer.Option("--name", help="A label for the token, to tell it from the account's others.")] = "cli") -> None:
    """Issue an API token for an account (shown once; audited)."""
    setup_django()
    from nccid.accounts.services import AccountError, issue_token

    try:
        _, token = issue_token(username, name, _cli_actor())
    except AccountError as exc:
        raise UserError(str(exc)) from exc
    console.print(token, markup=False, highlight=False, soft_wrap=True)


@token_app.command("list")
def token_list(username: Annotated[str | None, typer.Argument(help="Only this account's tokens.", show_default=False)] = None) -> None:
    """List API tokens: number, account, name, first characters, created, last used."""
    setup_django()
    from nccid.accounts.services import AccountError, tokens_of

    try:
        tokens = tokens_of(username)
    except AccountError as exc:
        raise UserError(str(exc)) from exc
    table = Table()
    for heading, short in (("No.", True), ("Account", False), ("Name", False), ("Begins", True),
                           ("Created (UTC)", True), ("Last used (UTC)", True)):
        table.add_column(heading, no_wrap=short)  # numbers and dates kept whole on 80 columns
    for token in tokens:
        table.add_row(str(token.pk), _plain(token.user.username), _plain(token.name),
                      f"{token.prefix}…" if token.prefix else "-", _when(token.created),
                      _when(token.last_used))
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    numbers: Annotated[list[int] | None, typer.Argument(help="The tokens' numbers, as 'nccid user token list' shows them.", show_default=False)] = None,
    all_of: Annotated[str | None, typer.Option("--all-of", metavar="USERNAME", help="Revoke every token of this account (with numbers: only those, if they are its).")] = None,
) -> None:
    """Revoke API tokens: the API refuses them at once (audited, token.revoke)."""
    setup_django()
    from nccid.accounts.services import AccountError, revoke_tokens

    try:
        revoked = revoke_tokens(list(numbers or []), _cli_actor(), all_of)
    except AccountError as exc:
        raise UserError(str(exc)) from exc
    for token in revoked:
        console.print(f"Revoked token {token.pk} of {token.user.username} ({token.name}, "
                      f"{token.prefix or 'nccid_'}…)", markup=False, highlight=False)
    if not revoked:
        console.print(f"{all_of} has no tokens: nothing was revoked", markup=False,
                      highlight=False)


user_app.add_typer(token_app, name="token")


def register(app: typer.Typer) -> None:
    app.add_typer(site_app, name="site")
    app.add_typer(user_app, name="user")
