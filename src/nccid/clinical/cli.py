"""Commands of the clinical part: ``nccid template`` and ``nccid clinical import``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nccid.cli.common import UserError, console, password_to_check, setup_django

clinical_app = typer.Typer(help="Clinical spreadsheets: import and check.", no_args_is_help=True)
MAX_ERRORS_SHOWN = 50


class Kind(StrEnum):
    positive = "positive"
    negative = "negative"
    isaric = "isaric"


def template(
    kind: Annotated[Kind, typer.Argument(help="Which template: positive, negative or isaric.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.xlsx or FILE.csv to write.")],
) -> None:
    """Write a blank clinical template (headers, drop-downs, hints, version stamp)."""
    from .xlsx_template import write_template

    if output.suffix.lower() not in (".xlsx", ".csv"):
        raise UserError(f"{output.name}: the template can be written as .xlsx or .csv")
    if not output.parent.exists():
        raise UserError(f"folder {output.parent} does not exist")
    write_template(kind.value, output)
    console.print(f"Wrote the {kind.value} template to {output}")


@clinical_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="The filled sheet (.xlsx or .csv).")],
    site: Annotated[str, typer.Option("--site", help="Site code of the submitting centre.")],
    kind: Annotated[Kind, typer.Option("--kind", help="positive, negative or isaric.")],
    user: Annotated[str | None, typer.Option(
        "--user", help="Your account, recorded as the uploader: the site's uploader or an "
                       "administrator (its password is asked). Without it, the upload is "
                       "recorded under your operating-system user (cli:NAME).")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the account's password from standard input.")] = False,
) -> None:
    """Validate, pseudonymise and import a clinical sheet. Exit 0: all rows accepted;
    2: some rows rejected; 1: the whole file refused."""
    setup_django()
    from nccid.accounts.models import Site, audited_from
    from nccid.accounts.signals import current_actor

    from .models import Upload
    from .services import import_file

    if not file.is_file():
        raise UserError(f"{file}: no such file")
    site_obj = Site.objects.filter(code=site.strip().upper()).first()
    if site_obj is None:
        raise UserError(f"no site with code {site!r} (add it with 'nccid site add')")
    os_user = current_actor()  # cli:<name>, as the commands that take no account record
    account = _signed_in_uploader(user, password_stdin, site_obj, os_user) if user else None
    with audited_from(os_user if account else ""):
        upload = import_file(site_obj, kind.value, file, account or os_user)
    _print_summary(upload)
    if upload.status == Upload.Status.REJECTED:
        raise typer.Exit(1)
    if upload.rejected_rows:
        raise typer.Exit(2)


def _signed_in_uploader(username: str, password_stdin: bool, site, os_user: str):
    """The account ``username`` after a password check, if it may upload for ``site`` on the
    portal (the site's uploader, or an administrator); a refusal is audited under the name
    and ``os_user`` (a name no account has is not recorded: it could be anything typed)."""
    from nccid.accounts.models import User, audit
    from nccid.identity.cli import UNKNOWN_USER
    from nccid.portal.auth import can_upload, upload_site_for

    password = password_to_check(password_stdin, username)
    account = User.objects.filter(username=username).first()
    cause = None
    if account is None or not account.check_password(password):
        cause = "unknown user or wrong password"
    elif not can_upload(account) or upload_site_for(account, site).pk != site.pk:
        cause = f"only {site.code}'s uploaders and administrators may import its sheets"
    if cause:
        named = account.username if account is not None else UNKNOWN_USER
        audit(f"{named} ({os_user})", "clinical.import.denied", cause=cause, site=site.code)
        raise UserError(cause)
    return account


def _print_summary(upload) -> None:
    from .services import not_listed

    if upload.message:
        console.print(f"[bold red]File refused:[/] {upload.message}", highlight=False)
    summary = Table(title=f"Upload {upload.pk}: {upload.kind} template, site {upload.site.code}")
    for name in ("status", "rows", "accepted", "new", "updated", "unchanged", "rejected"):
        summary.add_column(name, justify="right")
    summary.add_row(upload.status, str(upload.total_rows), str(upload.accepted_rows),
                    str(upload.new_records), str(upload.updated_records),
                    str(upload.unchanged_records), str(upload.rejected_rows))
    console.print(summary)
    for warning in upload.sheet_warnings or []:
        console.print(f"[yellow]note:[/] {warning}", highlight=False)
    problems = upload.errors or []
    if problems:
        table = Table(title=f"{upload.error_count} errors, {upload.warning_count} warnings")
        for name in ("row", "column", "value", "severity", "reason"):
            table.add_column(name)
        for problem in problems[:MAX_ERRORS_SHOWN]:
            table.add_row(str(problem["row"]), problem["column"], problem["value"],
                          problem["severity"], problem["reason"])
        console.print(table)
        if len(problems) > MAX_ERRORS_SHOWN:
            console.print(f"... and {len(problems) - MAX_ERRORS_SHOWN} more (see the upload's error "
                          "list in the portal)")
    omitted = upload.omitted_problems or []
    for counted in omitted[:MAX_ERRORS_SHOWN // 5]:
        console.print(f"{counted.get('column')}: {not_listed(counted)}", highlight=False)
    if len(omitted) > MAX_ERRORS_SHOWN // 5:
        rest = sum(o.get("count", 0) for o in omitted[MAX_ERRORS_SHOWN // 5:])
        console.print(f"... and {rest:,} more problems of {len(omitted) - MAX_ERRORS_SHOWN // 5} "
                      "other columns, not listed", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
    app.command("template")(template)
    app.add_typer(clinical_app, name="clinical")
