"""``nccid site …`` and ``nccid user …``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from nccid.cli.common import UserError, console, read_password, setup_django

site_app = typer.Typer(help="Submitting sites (centres).", no_args_is_help=True)
user_app = typer.Typer(help="Portal and API accounts.", no_args_is_help=True)


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
        site = add_site(code, name, ae_title, split)
    except AccountError as exc:
        raise UserError(str(exc)) from exc
    console.print(f"Added site {site.code} ({site.name}), AE title {site.ae_title or '-'}, split {site.split_rule}")


@site_app.command("list")
def site_list() -> None:
    """List the sites."""
    setup_django()
    from nccid.accounts.models import Site

    table = Table("Code", "Name", "AE title", "Split")
    for site in Site.objects.all():
        table.add_row(site.code, site.name, site.ae_title or "-", site.split_rule)
    console.print(table)


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option("--role", help="uploader, data-manager, researcher or admin.")],
    site: Annotated[str | None, typer.Option("--site", help="Site code (required for uploaders).")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")] = False,
    email: Annotated[str, typer.Option("--email", help="Contact address (data managers' is shown to sites on the guidance page).")] = "",
) -> None:
    """Create an account."""
    setup_django()
    from nccid.accounts.services import AccountError, add_user

    password = read_password(password_stdin)
    try:
        user = add_user(username, role, password, site, email)
    except AccountError as exc:
        raise UserError(str(exc)) from exc
    console.print(f"Added {user.get_role_display().lower()} {user.username}"
                  + (f" at {user.site.code}" if user.site else ""))


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


@user_app.command("token")
def user_token(username: str, name: Annotated[str, typer.Option("--name", help="A label for the token, to tell it from the account's others.")] = "cli") -> None:
    """Issue an API token for an account (shown once)."""
    setup_django()
    from nccid.accounts.models import ApiToken, User

    user = User.objects.filter(username=username).first()
    if user is None:
        raise UserError(f"no user {username!r}")
    _, token = ApiToken.issue(user, name)
    console.print(token, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(site_app, name="site")
    app.add_typer(user_app, name="user")
