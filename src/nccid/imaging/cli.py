"""Commands of the imaging part: ``nccid node``, ``nccid images …`` and ``nccid deid …``."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from nccid.cli import common
from nccid.cli.common import UserError, console, setup_django

images_app = typer.Typer(help="DICOM images: import; images pending a link or held for review.",
                         no_args_is_help=True)


def node(
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535, help="TCP port (default: node_port).")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
) -> None:
    """Run the DICOM node (C-ECHO, C-STORE) until stopped."""
    setup_django()
    import logging

    from nccid.cli.system import refuse_added_to_demo_home
    from nccid.config import get_settings

    from .node import serve

    refuse_added_to_demo_home()

    logging.getLogger("nccid").setLevel(logging.INFO)
    settings = get_settings()
    console.print(f"DICOM node {settings.node_ae_title} on {host or settings.node_host}:"
                  f"{settings.node_port if port is None else port}; Ctrl-C stops it.")
    serve(host, port)


@images_app.command("import")
def images_import(
    paths: Annotated[list[Path], typer.Argument(help="Folders, DICOM files or .zip archives.")],
    site: Annotated[str, typer.Option("--site", help="Code of the site the images come from.")],
) -> None:
    """Import DICOM files (de-identified on the way in). Running it again skips what is stored."""
    setup_django()
    from nccid.accounts.models import Site
    from nccid.warehouse.service import get_warehouse

    from .importer import collect, import_sources
    from .intake import sweep_temporaries
    from .logsafe import protect_logs
    from .outcome import IngestOutcome, IngestStatus

    protect_logs()

    site_obj = Site.objects.filter(code=site.strip().upper()).first()
    if site_obj is None:
        raise UserError(f"no site with code {site!r} (see 'nccid site list')")
    sweep_temporaries()  # what a killed import left half-written
    get_warehouse().sweep_temporaries()  # (in folders this run may never write into again)
    sources, problems = collect(paths)
    if not sources and not problems:
        raise UserError("no files found under the given paths")
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               DownloadColumn(), TextColumn("{task.fields[files]} files"), TimeRemainingColumn())
    bar_console = common.err_console  # (looked up now: tests swap in a terminal console)
    with Progress(*columns, console=bar_console, transient=False,
                  disable=not bar_console.is_terminal) as progress:
        task = progress.add_task("Importing", total=sum(s.size for s in sources), files=0)
        done = 0

        def advance(item) -> None:
            nonlocal done
            done += 1
            progress.update(task, advance=item.size, files=done)

        summary = import_sources(sources, site_obj, "import", advance)
    for name, reason in problems:
        summary.add(name, IngestOutcome(IngestStatus.REJECTED, reason), 0)
    _print_summary(summary)
    if summary.stopped:
        left = len(sources) + len(problems) - summary.total
        raise UserError(f"the import stopped: {summary.stopped}. {left:,} file(s) not imported "
                        "yet: run the same import again, once what it names is fixed if it names a "
                        "setting to check (what is stored is skipped)")
    if summary.rejected:
        raise typer.Exit(1)


def _print_summary(summary) -> None:
    table = Table("Outcome", "Files", title="Import summary")
    for status in ("stored", "duplicate", "pending", "held", "rejected"):
        table.add_row(status, str(summary.counts.get(status, 0)))
    console.print(table)
    for name, reason in summary.rejected:  # one line each: paths are never cut or wrapped
        console.print(f"rejected: {name}: {reason}", highlight=False, markup=False,
                      soft_wrap=True)


@images_app.command("purge-pending")
def purge_pending() -> None:
    """Link pending images whose clinical record is in, then delete those past the retention
    limit (pending_retention_days) that still have none. Run it daily; exits 1 when some
    could not be linked (as 'nccid images link' does)."""
    setup_django()
    from .intake import sweep_temporaries
    from .pending import link_and_purge

    sweep_temporaries()
    done, count = link_and_purge(user="cli")
    _print_linked(done)
    console.print(f"Purged {count} pending image(s) past retention.")
    _fail_if_unlinked(done)


@images_app.command("link")
def link() -> None:
    """Link pending images whose clinical record is in: what an import or portal stopped while
    linking (killed, or the object store or database down) left waiting. Safe to run any time."""
    setup_django()
    from .linking import link_known
    from .pending import remove_leftover_files

    done = link_known()
    remove_leftover_files()
    _print_linked(done)
    _fail_if_unlinked(done)


def _print_linked(done) -> None:
    console.print(f"Linked {done.linked} pending image(s).")
    if done.refused:
        console.print(f"Refused {done.refused} pending image(s) (lost file or "
                      "de-identification; their receipts and the audit trail say which).",
                      highlight=False)


def _fail_if_unlinked(done) -> None:
    """Exit 1 (a cron job's alarm) when images whose record is in are still waiting: left by
    an outage (``failed``), or held by another linker (``claimed_elsewhere``)."""
    from .linking import STALE_CLAIM

    if not done.unlinked:
        return
    causes = [done.why or "see the errors above"] if done.failed else []
    if done.claimed_elsewhere:
        causes.append(f"{done.claimed_elsewhere} held by another process linking them (an "
                      "import, an upload or the node) that still runs, or runs on another "
                      f"host (its claim lapses {STALE_CLAIM.seconds // 60} minutes on)")
    raise UserError(f"{done.unlinked} pending image(s) could not be linked: "
                    f"{'; '.join(causes)}; they wait for the next 'nccid images link'")


@images_app.command("pending")
def pending_list(
    mark_folder: Annotated[bool, typer.Option(
        "--mark-folder", help="Mark pending_dir as the waiting images' folder: only when it is "
                              "the one folder every host shares, mounted, and its waiting "
                              "files were lost (or its marker deleted); images whose file it "
                              "lacks are then refused as lost.")] = False,
) -> None:
    """How many images wait for a clinical record, per site."""
    setup_django()
    from django.db.models import Count, Min

    from .models import PendingImage

    if mark_folder:
        _mark_folder()

    table = Table("Site", "Pending images", "Oldest expires (UTC)")
    for row in (PendingImage.objects.values("site__code")
                .annotate(n=Count("id"), first=Min("expires_at")).order_by("site__code")):
        table.add_row(row["site__code"], str(row["n"]), _utc(row["first"]))
    console.print(table)


def _utc(moment) -> str:
    """A time as every table of the CLI gives it: UTC, to the minute (the header says UTC).
    An expiry as a bare date could be the day before the one the portal, in London, shows."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


def _mark_folder() -> None:
    from nccid.config import get_settings

    from .intake import MARKER, PendingFolderError, mark_pending_folder

    folder = get_settings().pending_dir
    try:
        mark_pending_folder(folder)
    except PendingFolderError as exc:
        raise UserError(f"could not mark pending_dir {folder}: {exc.strerror}") from None
    console.print(f"Marked {folder} as the waiting images' folder ({MARKER}).",
                  highlight=False)


@images_app.command("held")
def held_list(
    site: Annotated[str | None, typer.Option("--site", help="List this site's held images one by one.")] = None,
) -> None:
    """Images held for review (possible burned-in text): how many per site, or one site's list."""
    setup_django()
    from django.db.models import Count, Min

    from nccid.accounts.models import Site

    from .services import held_images

    if site is None:
        table = Table("Site", "Held images", "Oldest received (UTC)", title="Held for review")
        for row in (held_images().values("site__code")
                    .annotate(n=Count("id"), first=Min("received_at")).order_by("site__code")):
            table.add_row(row["site__code"], str(row["n"]), _utc(row["first"]))
    else:
        found = Site.objects.filter(code=site.strip().upper()).first()
        if found is None:
            raise UserError(f"no site with code {site!r} (see 'nccid site list')")
        table = Table(title=f"Held for review at {found.code}")
        for header in ("Id", "Received (UTC)", "Modality", "Patient"):  # never cut or wrapped
            table.add_column(header, no_wrap=True)
        table.add_column("Why held", ratio=1)
        for held in held_images(found).order_by("received_at", "id"):
            table.add_row(str(held.pk), _utc(held.received_at), held.modality,
                          held.pseudonym or "not linked yet", held.reason)
    if not table.row_count:
        console.print("No images are held for review.")
        return
    console.print(table)
    console.print("Release or reject them on the portal's review page (/review/).",
                  highlight=False)


@images_app.command("quarantine")
def quarantine_list(
    retry: Annotated[bool, typer.Option(
        "--retry", help="Put them back into the spool (stop the node first): its next run "
                        "takes them again.")] = False,
) -> None:
    """Received images the node could not process (its worker died on them, or intake failed
    on them alone while later files went in), kept encrypted for an operator: list them, or
    put them back into the spool."""
    setup_django()
    from cryptography.exceptions import InvalidTag

    from nccid.config import get_settings
    from nccid.identity.service import get_keyring

    from .spool import open_quarantined, quarantined

    directory = get_settings().spool_dir
    if retry:
        _requeue(directory)
        return
    table = Table("File", "Site", "Bytes", title=f"Quarantined in {directory}")
    keyring = get_keyring()
    for path in quarantined(directory):
        try:
            code = open_quarantined(keyring, path)[0]
        except InvalidTag:
            code = "(fails authentication)"
        table.add_row(path.name, code, str(path.stat().st_size))
    if not table.row_count:
        console.print("No received images are quarantined.")
        return
    console.print(table)
    console.print("Once the cause is fixed (see the node's log), stop the node and run "
                  "'nccid images quarantine --retry'.", highlight=False)


def _requeue(directory: Path) -> None:
    from cryptography.exceptions import InvalidTag

    from .node import open_spool
    from .spool import SpoolError, requeue_quarantined

    try:
        spool = open_spool(directory)
    except SpoolError as exc:  # the node runs: it holds the spool
        raise UserError(f"{exc}: stop the node first") from None
    try:
        count = requeue_quarantined(spool)
    except InvalidTag:
        raise UserError("a quarantined record fails authentication (altered, or written "
                        "under another key): move it away and try again") from None
    finally:
        spool.close()
    console.print(f"{count} image(s) put back into the spool; the node takes them at its "
                  "next start.", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
    app.command("node")(node)
    app.add_typer(images_app, name="images")
    try:
        from .deid.cli import register_deid
    except ImportError:  # the de-identification library's commands are not there yet
        return
    register_deid(app)
