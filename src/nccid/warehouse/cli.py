"""``nccid warehouse …``: refresh the catalogue, verify stored objects, show figures."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from nccid.cli.common import UserError, console, setup_django
from nccid.cli.progress import progress_bar

warehouse_app = typer.Typer(help="The image warehouse and its catalogue.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
    app.add_typer(warehouse_app, name="warehouse")


def _storage_errors():
    from .storage import StorageError

    return (StorageError, OSError, PermissionError)


@warehouse_app.command("catalogue")
def catalogue(
    compact_at: Annotated[int, typer.Option(help="Merge image parts once there are more than this.")] = 32,
) -> None:
    """Bring the Parquet catalogue up to date (incremental) and print its row counts."""
    setup_django()
    from .catalogue import refresh_catalogue

    try:
        with progress_bar("Refreshing the catalogue", counted=False):
            result = refresh_catalogue(compact_at=compact_at)
    except _storage_errors() as exc:
        raise UserError(f"catalogue not refreshed: {exc}") from exc
    table = Table("Table", "Rows")
    for view in ("images", "studies", "clinical", "patients"):
        table.add_row(view, f"{result[view]:,}")
    console.print(table)
    console.print(f"version {result['version']}: {result['new_images']:,} new image(s), "
                  f"{result['parts']} image part(s)")


@warehouse_app.command("verify")
def verify(
    sample: Annotated[int, typer.Option(help="How many images to re-check (a random sample).")] = 200,
    all_objects: Annotated[bool, typer.Option("--all", help="Re-check every image.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    forget_missing: Annotated[bool, typer.Option(
        "--forget-missing", help="Data managers: forget the images found missing, so that the "
        "sites' receipts ask for them and the same files sent again are stored (audited).")
    ] = False,
    user: Annotated[str | None, typer.Option(
        "--user", help="Your data-manager account (with --forget-missing).")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the account's password from standard input.")] = False,
) -> None:
    """Re-read stored images and compare size and SHA-256 with the catalogue; count clinical
    records whose JSON is not in the warehouse; with --all, also objects no database row names."""
    setup_django()
    from .service import (
        clinical_records_without_json,
        objects_no_row_names,
        uncatalogued_images,
        verify_objects,
    )
    from .upgrade import STALE_CLINICAL_JSON, clinical_json_stale

    if sample < 1 and not all_objects:
        raise UserError("--sample must be at least 1 (or use --all)")
    account = _data_manager(user, password_stdin) if forget_missing else None
    try:
        withdrawals = _withdrawal_differences()
        unapplied = set(withdrawals.unapplied)  # their rows are expected to lack objects
        with progress_bar("Re-hashing images") as bar:
            report = verify_objects(None if all_objects else sample, seed, on_progress=bar.reached,
                                    leave_out=unapplied,
                                    leave_out_studies=set(withdrawals.studies_unapplied))
        no_json = clinical_records_without_json(leave_out=unapplied)
        stale = clinical_json_stale()
        unnamed = objects_no_row_names() if all_objects else {}
    except _storage_errors() as exc:
        raise UserError(f"cannot read the warehouse: {exc}") from exc
    pending = uncatalogued_images()
    for key in report.missing:
        console.print(f"[red]missing[/]   {key}", highlight=False, soft_wrap=True)
    for key in report.mismatched:
        console.print(f"[red]mismatch[/]  {key}", highlight=False, soft_wrap=True)
    console.print(f"checked {report.checked:,} image(s): {len(report.missing)} missing, "
                  f"{len(report.mismatched)} mismatched")
    if account is not None and report.missing:
        _forget(account, report.missing)
    elif report.missing:
        console.print("Sent again, a missing image is answered 'duplicate' until it is "
                      "forgotten: 'nccid warehouse verify --all --forget-missing --user NAME'")
    if report.counts_differ:
        console.print(f"[red]the catalogue lists {report.in_catalogue:,} image(s) but the database "
                      f"has {report.in_database:,} catalogued[/]: is the warehouse mounted/reachable "
                      "(or did a refresh fail? run 'nccid warehouse catalogue')", highlight=False)
    if pending:
        console.print(f"{pending:,} image(s) stored since the last refresh are not checked: "
                      "run 'nccid warehouse catalogue' first")
    if no_json:
        console.print(f"[red]{no_json:,} clinical record(s) have no JSON in the warehouse[/] (an "
                      "import stopped before writing it, or the store was down): run 'nccid "
                      "warehouse sync-clinical', then 'nccid images link'", highlight=False)
    if stale:
        console.print(f"[red]{STALE_CLINICAL_JSON}[/]", highlight=False)
    _say_unnamed(unnamed)
    if not report.ok or no_json or stale or withdrawals.any or unnamed:
        raise typer.Exit(1)


def _say_unnamed(unnamed: dict[str, int]) -> None:
    """Objects no database row names, by patient (pseudonyms are not identifiers)."""
    if not unnamed:
        return
    by_count = sorted(unnamed.items(), key=lambda item: (-item[1], item[0]))
    first = ", ".join(f"{pseudonym}: {count:,}" for pseudonym, count in by_count[:5])
    more = f" and {len(by_count) - 5:,} more" if len(by_count) > 5 else ""
    console.print(
        f"[red]{sum(unnamed.values()):,} object(s) in the warehouse are named by no database "
        f"row, of {len(unnamed):,} patient(s)[/] ({first}{more}): the databases are older than "
        "the warehouse (restored from a backup?), or an intake was stopped between storing and "
        "recording (one running now may count). Researchers do not see them and no other "
        "command counts them. Restore the newer backup of the databases if there is one; "
        "else 'nccid patient show PSEUDONYM' lists them, the sites sending those studies and "
        "sheets again have them recorded, and 'nccid patient withdraw PSEUDONYM' removes them.",
        highlight=False, soft_wrap=True)


def _withdrawal_differences():
    """Where the withdrawal and study removal lists and the warehouse's markers disagree, said
    first: a database restored from before a withdrawal or a removal must have it re-applied
    before any other repair."""
    from nccid.withdrawal.markers import differences

    found = differences()
    if found.unapplied:
        console.print(
            f"[red]the database lacks {len(found.unapplied):,} withdrawal(s) the warehouse "
            f"records ({_first(found.unapplied)}): it was restored from a backup made before "
            "them. Run 'nccid init' to re-apply them[/] (what the backup brought back of "
            "these patients is removed again; nothing of theirs is written back meanwhile, "
            "and their rows are left out of the counts below)", highlight=False, soft_wrap=True)
    if found.stale:
        console.print(f"the warehouse marks {len(found.stale):,} patient(s) withdrawn that the "
                      f"database records as reinstated ({_first(found.stale)}): run 'nccid "
                      "init' to remove the markers", highlight=False, soft_wrap=True)
    if found.unmarked:
        console.print(f"{len(found.unmarked):,} withdrawal(s) have no marker in the warehouse "
                      f"({_first(found.unmarked)}): run 'nccid init' to write them",
                      highlight=False, soft_wrap=True)
    if found.studies_unapplied:
        console.print(
            f"[red]the database lacks {len(found.studies_unapplied):,} study removal(s) the "
            f"warehouse records ({_first(found.studies_unapplied)}): it was restored from a "
            "backup made before them. Run 'nccid init' to re-apply them[/] (what the backup "
            "brought back of these studies is removed again; intake refuses them meanwhile, "
            "and their rows are left out of the counts below)", highlight=False, soft_wrap=True)
    if found.studies_unmarked:
        console.print(f"{len(found.studies_unmarked):,} study removal(s) have no marker in the "
                      f"warehouse ({_first(found.studies_unmarked)}): run 'nccid init' to write "
                      "them", highlight=False, soft_wrap=True)
    return found


def _first(pseudonyms, shown: int = 5) -> str:
    names = sorted(pseudonyms)
    return ", ".join(names[:shown]) + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def _data_manager(user: str | None, password_stdin: bool):
    from nccid.identity.cli import login_data_manager

    if not user:
        raise UserError("--forget-missing needs --user (a data-manager account)")
    return login_data_manager(user, password_stdin, "warehouse.forget_missing",
                              doing="forget missing images")


def _forget(account, keys: list[str]) -> None:
    """Forget the missing images (audited), then refresh the catalogue without them."""
    from .catalogue import refresh_catalogue
    from .repair import forget_missing

    try:
        forgotten = forget_missing(keys, account)
    except _storage_errors() as exc:
        raise UserError(f"stopped forgetting: cannot read the warehouse: {exc} (run it again "
                        "once it answers)") from exc
    sites = ", ".join(f"{code}: {n:,}" for code, n in sorted(forgotten.by_site.items()))
    console.print(f"forgot {forgotten.images:,} missing image(s) ({sites or 'none'}): their "
                  "studies' receipts ask the sites to send them again, and sent again they are "
                  "stored", highlight=False)
    if forgotten.present_again:
        console.print(f"{forgotten.present_again:,} image(s) are there when checked again: "
                      "left alone")
    if forgotten.not_recorded:
        console.print(f"{forgotten.not_recorded:,} missing key(s) belong to no stored image (a "
                      "stale catalogue): the refresh drops them")
    try:
        refresh_catalogue()
    except _storage_errors() as exc:
        raise UserError(f"the catalogue still lists the forgotten images: {exc}; run 'nccid "
                        "warehouse catalogue'") from exc


@warehouse_app.command("stats")
def stats() -> None:
    """Images, studies, patients and bytes by set and modality folder (from the catalogue)."""
    setup_django()
    from nccid.config import mask_url_password

    from .catalogue import catalogue_counts, catalogue_updated_at, connect_catalogue
    from .service import clinical_changed_since, get_warehouse, uncatalogued_images

    try:
        con = connect_catalogue()
        counts = catalogue_counts()
        as_of = catalogue_updated_at()
    except _storage_errors() as exc:
        raise UserError(f"cannot read the catalogue: {exc}") from exc
    rows = con.execute(
        "SELECT set_name, folder, count(DISTINCT pseudonym), count(DISTINCT study_uid), count(*), "
        "sum(size) FROM images GROUP BY ALL ORDER BY ALL").fetchall()
    table = Table("Set", "Folder", "Patients", "Studies", "Images", "Bytes")
    for set_name, folder, patients, studies, images, size in rows:
        table.add_row(set_name, folder, f"{patients:,}", f"{studies:,}", f"{images:,}", _size(size))
    console.print(f"warehouse {mask_url_password(get_warehouse().url)}, catalogue version "
                  f"{counts.get('version', 0)}", highlight=False)
    console.print(table)
    patients, clinical = con.execute("SELECT (SELECT count(*) FROM patients), "
                                     "(SELECT count(*) FROM clinical)").fetchone()
    changed = clinical_changed_since(as_of).count()  # no margin: what it read is not waiting
    console.print(f"{patients:,} patient(s), {clinical:,} clinical record(s); "
                  f"{uncatalogued_images():,} image(s) not yet in the catalogue, {changed:,} "
                  "clinical record(s) new or changed since its refresh", highlight=False)


@warehouse_app.command("sync-clinical")
def sync_clinical() -> None:
    """Rewrite every clinical record's JSON in the warehouse from the database (repair)."""
    setup_django()
    from .service import sync_clinical as sync

    try:
        with progress_bar("Writing clinical records") as bar:
            written = sync(on_progress=bar.reached)
    except _storage_errors() as exc:
        raise UserError(f"clinical records not written: {exc}") from exc
    console.print(f"wrote {written:,} clinical record(s)")


def _size(value: int | None) -> str:
    value = float(value or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return ""
