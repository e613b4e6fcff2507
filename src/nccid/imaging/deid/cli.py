"""``nccid deid ...``: check files for identifying values; show the profiles.

The imaging part registers this with ``register_deid(app)``. Pure: no database needed.
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import typer
from rich.table import Table

from nccid.cli.common import UserError, console


def register_deid(app: typer.Typer) -> None:
    deid = typer.Typer(help="De-identification: check files, show profiles.", no_args_is_help=True)

    @deid.command("check")
    def check(
        paths: list[str] = typer.Argument(
            None, help="DICOM files or folders (header JSON beside them included), or s3:// "
                       "URLs of a warehouse or a folder of one"),
        warehouse: bool = typer.Option(
            False, "--warehouse", help="check this installation's warehouse (storage_url, "
                                       "local or S3)"),
        profile: str = typer.Option(
            "", help="the profile the files were de-identified with, or 'any' (only what every "
                     "profile removes); default: this installation's, else 'any'"),
    ) -> None:
        """Report attributes whose values still look identifying, in DICOM files and the
        header JSON beside them; exit 1 if any are found."""
        from nccid.cli.progress import progress_bar
        from nccid.config import mask_url_password

        from .check import check_paths, check_store

        stores, local = _sources(paths or [], warehouse)
        judged = _profile_to_judge(profile)
        console.print(f"Removals judged against the {judged} profile" if judged else
                      "Removals judged against every profile (what all of them remove)",
                      highlight=False)
        findings, scanned, skipped = [], 0, 0
        if local:
            with progress_bar("Checking files") as bar:
                findings, scanned, skipped = check_paths(local, on_file=bar.advance, profile=judged)
        for store in stores:
            console.print(f"Checking the store at {mask_url_password(store.url)}",
                          highlight=False)
            keys = _listed(store)
            with progress_bar("Checking objects", len(keys)) as bar:
                found, checked, other = check_store(store, keys, on_file=bar.advance,
                                                    profile=judged)
            findings, scanned, skipped = findings + found, scanned + checked, skipped + other
        _report(findings)
        console.print(f"{scanned} DICOM or header JSON file(s) checked, {skipped} other file(s) "
                      f"skipped, {len(findings)} finding(s)", highlight=False)
        if findings:
            raise typer.Exit(1)

    @deid.command("profiles")
    def profiles() -> None:
        """List the de-identification profiles and the options each applies."""
        from .profile import load_data, profile_names

        spec = load_data("profiles.json")
        table = Table()
        for column in ("profile", "description", "options", "codes"):
            table.add_column(column)
        for name in profile_names():
            table.add_row(name, spec[name]["description"], ", ".join(spec[name]["options"]),
                          ", ".join(spec[name]["method_codes"]))
        console.print(table)

    app.add_typer(deid, name="deid")


def _sources(paths: list[str], warehouse: bool) -> tuple[list, list[Path]]:
    """(stores, local paths) to check: the installation's warehouse with ``--warehouse``, a
    store for each s3:// URL (with the settings' storage options: its endpoint and
    credentials), the other arguments as local files or folders."""
    from nccid.warehouse.storage import StorageError, Warehouse

    if not paths and not warehouse:
        raise UserError("name files or folders to check, or --warehouse")
    urls = [p for p in paths if "://" in p]
    local = [Path(p) for p in paths if "://" not in p]
    missing = [str(p) for p in local if not p.exists()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    try:
        stores = [_installation_warehouse()] if warehouse else []
        stores += [Warehouse(url, _storage_options()) for url in urls]
    except StorageError as exc:
        raise UserError(str(exc)) from exc
    return stores, local


def _installation_warehouse():
    """The warehouse of the settings, built as ``warehouse.service.get_warehouse`` builds it
    (which needs Django: this command does not set it up)."""
    from nccid.config import ConfigError, get_settings
    from nccid.warehouse.storage import Warehouse

    try:
        settings = get_settings()
    except ConfigError as exc:
        raise UserError(f"no warehouse to check: {exc}") from exc
    return Warehouse(settings.storage_url, settings.storage_options)


def _storage_options() -> dict:
    from nccid.config import ConfigError, get_settings

    try:
        return dict(get_settings().storage_options)
    except ConfigError:
        return {}


def _listed(store) -> list[str]:
    """Every key of ``store`` (listed first, so the bar has its total)."""
    from nccid.warehouse.storage import StorageError

    try:
        return store.list()
    except StorageError as exc:
        raise UserError(str(exc)) from exc


def _report(findings) -> None:
    """One table per file (or object), in the order found."""
    for file, found in groupby(findings, key=lambda finding: finding.file):
        found = list(found)
        table = Table(title=f"{file}: {len(found)} possibly identifying value(s)",
                      title_justify="left")
        table.add_column("tag", no_wrap=True)
        table.add_column("keyword", overflow="fold")
        table.add_column("reason", ratio=1)
        table.add_column("value (masked)", overflow="fold")
        for f in found:
            table.add_row(f.tag, f.keyword, f.reason, f.masked)
        console.print(table)


def _profile_to_judge(given: str) -> str | None:
    """The profile whose removals ``deid check`` judges: the one given ('any': None), else
    the installation's when there is one (its settings name a profile, or it has a key
    file), else None (files from elsewhere: what every profile removes)."""
    from nccid.config import ConfigError, get_settings, setting_origin

    from .profile import profile_names

    if given:
        if given == "any":
            return None
        if given not in profile_names():
            raise UserError(f"unknown profile {given!r} (known: {', '.join(profile_names())}, any)")
        return given
    try:
        settings = get_settings()
        known = setting_origin("deid_profile") != "the default" or settings.key_file.exists()
    except ConfigError:
        return None
    return settings.deid_profile if known else None
