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
        paths: list[Path] = typer.Argument(..., help="DICOM files or folders"),
        profile: str = typer.Option(
            "", help="the profile the files were de-identified with, or 'any' (only what every "
                     "profile removes); default: this installation's, else 'any'"),
    ) -> None:
        """Report attributes whose values still look identifying; exit 1 if any are found."""
        from nccid.cli.progress import progress_bar

        from .check import check_paths

        judged = _profile_to_judge(profile)
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise UserError(f"no such file or folder: {', '.join(missing)}")
        console.print(f"Removals judged against the {judged} profile" if judged else
                      "Removals judged against every profile (what all of them remove)",
                      highlight=False)
        with progress_bar("Checking files") as bar:
            findings, scanned, skipped = check_paths(paths, on_file=bar.advance, profile=judged)
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
        console.print(f"{scanned} DICOM file(s) checked, {skipped} other file(s) skipped, "
                      f"{len(findings)} finding(s)", highlight=False)
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
