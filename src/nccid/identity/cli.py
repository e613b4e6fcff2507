"""Commands of the identity part: ``nccid link``, ``nccid vault …`` and ``nccid key …``.

Nothing here prints an NHS/CHI number except ``vault reveal``, which prints only the number,
only on standard output, only for an authenticated data manager, after auditing it.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sys
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from nccid.cli.common import UserError, console, err_console, password_to_check, setup_django

vault_app = typer.Typer(help="The key vault: reveal a pseudonym's NHS/CHI number, audit, re-key.",
                        no_args_is_help=True)
key_app = typer.Typer(help="The project key file: fingerprint and check.", no_args_is_help=True)

PROGRESS_MIN_BYTES = 5 * 1024 * 1024
UserOption = Annotated[str, typer.Option("--user", help="Your data-manager account.")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin",
                                             help="Read the account's password from standard input.")]
UNKNOWN_USER = "(unknown user)"  # who a refused sign-in was, when no account has the name
# The first re-key of a key file written before 'nccid init' made a random vault key.
DERIVED_VAULT_KEY_STAYS = (
    "Note: the previous vault key was derived from the master key, which the key file keeps "
    "(it makes the pseudonyms), so vault backups made before this re-key can still be "
    "decrypted with the new key file. Destroy those vault backups if that matters (see "
    "docs/keys.md, 'Rotation'); later re-keys retire their vault key for good."
)


def _cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def link(
    file: Annotated[Path, typer.Argument(help="CSV file with a column of NHS/CHI numbers.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV file to write.")],
    column: Annotated[str, typer.Option("--column", help="Header of the NHS/CHI number column.")] = "nhs_number",
    strict: Annotated[bool, typer.Option("--strict", help="Fail (writing nothing) if any number is invalid.")] = False,
    encoding: Annotated[str, typer.Option("--encoding", help="Text encoding of FILE.")] = "utf-8-sig",
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field delimiter.")] = ",",
) -> None:
    """Replace a column of NHS/CHI numbers by the warehouse's pseudonyms (the numbers are dropped)."""
    from nccid.identity.linkfile import LinkFileError, check_output_path, link_csv

    if len(delimiter) != 1:
        raise UserError("--delimiter must be one character")
    if not file.is_file():
        raise UserError(f"{file} is not a file")
    try:
        check_output_path(output)
    except LinkFileError as exc:
        raise UserError(str(exc)) from exc
    setup_django()
    from nccid.accounts.models import audit
    from nccid.identity.service import get_keyring

    size = file.stat().st_size
    show = size >= PROGRESS_MIN_BYTES and err_console.is_terminal
    with Progress("Linking", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err_console, disable=not show, transient=True) as bar:
        task = bar.add_task("link", total=size)
        try:
            summary = link_csv(file, output, column, get_keyring(), strict=strict,
                               encoding=encoding, delimiter=delimiter,
                               progress=lambda done: bar.update(task, completed=done))
        except LinkFileError as exc:
            raise UserError(str(exc)) from exc
        except LookupError as exc:  # an unknown --encoding
            raise UserError(f"unknown encoding {encoding!r}") from exc
    audit(_cli_actor(), "identity.link", rows=summary.rows, pseudonymised=summary.pseudonymised,
          invalid=summary.invalid, strict=strict)
    console.print(f"Wrote {output}: {summary.rows} rows, {summary.pseudonymised} pseudonymised, "
                  f"{summary.invalid} invalid (empty pseudonym, reason in pseudonym_error); "
                  f"column {column!r} dropped.", highlight=False)
    for row, reason in summary.invalid_rows:
        err_console.print(f"row {row}: {column} {reason}", highlight=False)
    if summary.invalid > len(summary.invalid_rows):
        err_console.print(f"… and {summary.invalid - len(summary.invalid_rows)} more invalid rows")
    for name, count in summary.suspicious_columns.items():
        err_console.print(f"[yellow]warning:[/] column {name!r} holds values that look like "
                          f"NHS/CHI numbers in {count} row(s); they were copied unchanged",
                          highlight=False)


def login_data_manager(username: str, password_stdin: bool, action: str, pseudonym: str = "",
           reason: str = "", doing: str = "use the vault", *, identifying: bool = False):
    """The active data-manager account ``username`` after a password check; refusals audited
    with what was asked for (the pseudonym only if it is one, the reason only if it seems to
    hold no identifier). ``doing`` ends the refusal, "only data managers may …".

    ``identifying``: the command turns an identifier into a pseudonym or shows identifying
    content (``User.may_reidentify``), so an administrator is refused too, as on the portal."""
    from nccid.accounts.models import ADMINS_MAY_NOT_REIDENTIFY, Role, User, audit
    from nccid.identity.reasons import identifier_in_reason
    from nccid.identity.service import normalise_pseudonym

    password = password_to_check(password_stdin, username)
    user = User.objects.filter(username=username).first()
    cause = None
    if user is None or not user.check_password(password):
        cause = "unknown user or wrong password"
    elif not user.is_active or not user.is_data_manager:
        cause = f"only data managers may {doing}"
    elif identifying and not user.may_reidentify:
        cause = ADMINS_MAY_NOT_REIDENTIFY if user.role == Role.ADMIN else f"only data managers may {doing}"
    if cause:
        # A name no account has is not recorded: it could be anything typed (an NHS number).
        named = user.username if user is not None else UNKNOWN_USER
        audit(f"{named} ({_cli_actor()})", f"{action}.denied", cause=cause,
              pseudonym=normalise_pseudonym(pseudonym) or "",
              reason="" if identifier_in_reason(reason.strip()) else reason.strip())
        raise UserError(cause)
    return user


@vault_app.command("reveal")
def vault_reveal(
    pseudonym: Annotated[str, typer.Argument(help="The pseudonym, NCCID-….")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log): "
                                                          "no names, dates, hospital or NHS/CHI "
                                                          "numbers.")],
    user: UserOption,
    password_stdin: PasswordStdin = False,
) -> None:
    """Print the NHS/CHI number of a pseudonym (data managers; audited who/when/which/why)."""
    setup_django()
    from nccid.identity.service import ReasonRequired, UnknownPseudonym, VaultAccessDenied, reveal

    account = login_data_manager(user, password_stdin, "vault.reveal", pseudonym, reason,
                                 identifying=True)
    try:
        number = reveal(account, pseudonym, reason)
    except (VaultAccessDenied, ReasonRequired, UnknownPseudonym) as exc:
        raise UserError(str(exc).strip("'\"")) from exc
    sys.stdout.write(number + "\n")
    sys.stdout.flush()
    err_console.print("Revealed; this access is recorded in the audit log.", highlight=False)


@vault_app.command("audit")
def vault_audit(
    user: UserOption,
    password_stdin: PasswordStdin = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many events.")] = 50,
    action: Annotated[str | None, typer.Option("--action", help="Only actions starting with this, e.g. vault.")] = None,
    pseudonym: Annotated[str | None, typer.Option("--pseudonym", help="Only events about this pseudonym.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List recent audit events, newest first (data managers)."""
    setup_django()
    from nccid.accounts.models import AuditEvent

    login_data_manager(user, password_stdin, "audit.view")
    events = AuditEvent.objects.all()
    if action:
        events = events.filter(action__startswith=action)
    if pseudonym:
        events = events.filter(pseudonym=pseudonym.strip().upper())
    events = events.order_by("-at", "-id")[:limit]
    if as_json:
        for e in events:
            sys.stdout.write(json.dumps({"at": e.at.isoformat(), "user": e.username, "action": e.action,
                                         "pseudonym": e.pseudonym, "reason": e.reason,
                                         "detail": e.detail}) + "\n")
        return
    table = Table("When (UTC)", "Who", "Action", "Pseudonym", "Why", "Detail")
    for e in events:
        # As typed (Text, not markup): a reason, a site's or a token's name may hold brackets.
        table.add_row(e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), Text(e.username),
                      Text(e.action), Text(e.pseudonym or "-"), Text(e.reason or "-"),
                      Text(json.dumps(e.detail) if e.detail else ""))
    console.print(table)


@vault_app.command("rekey")
def vault_rekey(user: UserOption, password_stdin: PasswordStdin = False) -> None:
    """Re-encrypt every vault entry under a new vault key (pseudonyms do not change).

    Stop the portal, the DICOM node and imports first; restart them afterwards.
    """
    setup_django()
    from nccid.accounts.models import audit
    from nccid.config import get_settings
    from nccid.identity.keys import write_key_file
    from nccid.identity.service import get_keyring, rekey_vault

    account = login_data_manager(user, password_stdin, "vault.rekey")
    _remove_key_temporaries()
    key_file = get_settings().key_file
    staged = key_file.with_name(key_file.name + ".new")
    if staged.exists():
        raise UserError(f"{staged} exists: a re-key was interrupted; see docs/keys.md before retrying")
    old = get_keyring()
    new = old.with_new_vault_key()
    write_key_file(staged, new.key_file_text())
    despite = ""
    try:
        count = rekey_vault(new)
    except BaseException as exc:  # Ctrl-C too: the staged key must be settled either way
        count, despite = _after_failed_rekey(account, exc, staged, key_file, new.vault_fingerprint)
    retired = _install_new_key(key_file, staged)
    audit(account, "vault.rekey", entries=count, old_vault_key=old.vault_fingerprint,
          new_vault_key=new.vault_fingerprint, **({"error_reported": despite} if despite else {}))
    if despite:
        err_console.print(f"[yellow]warning:[/] the database reported an error ({despite}) but "
                          "the re-key was committed: every vault entry is under the new vault key, "
                          "so the new key file was put in place.", highlight=False)
    console.print(
        f"Re-encrypted {count} vault entries under vault key {new.vault_fingerprint}.\n"
        f"The key file {key_file} now holds the new vault key; the previous file is {retired}.\n"
        "Replace every backup copy of the key file now, check its fingerprint "
        "('nccid key fingerprint --file COPY'), then destroy the retired file and old copies.",
        highlight=False,
    )
    if old.vault_key_derived:
        console.print(DERIVED_VAULT_KEY_STAYS, highlight=False)


def _remove_key_temporaries() -> None:
    """Delete the hidden copies of a key file that a killed key write left beside it."""
    from nccid.config import get_settings
    from nccid.identity.keys import remove_key_temporaries

    removed = remove_key_temporaries(get_settings().key_file)
    if removed:
        copies = "copy" if len(removed) == 1 else "copies"
        console.print(f"Removed {len(removed)} temporary {copies} of a key file left by an "
                      f"interrupted write: {', '.join(path.name for path in removed)}.",
                      highlight=False)


def _install_new_key(key_file: Path, staged: Path) -> Path:
    """Keep the current key file as ``.retired-<time>`` and move the staged one into place."""
    from nccid.identity.keys import retire_key_file
    from nccid.identity.service import reset_keyring_cache

    retired = retire_key_file(key_file)  # 0600 from the start
    os.replace(staged, key_file)
    reset_keyring_cache()
    return retired


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _after_failed_rekey(account, exc: BaseException, staged: Path, key_file: Path,
                        new_vault_key: str) -> tuple[int, str]:
    """Settle the staged key after ``rekey_vault`` failed, by what the vault now holds (an
    error may come after the commit, e.g. a lost connection while COMMIT is acknowledged).

    Returns (entries, cause) when every entry is under the new key (the caller puts it in
    place); otherwise audits the failure and raises UserError (KeyboardInterrupt as itself).
    """
    from nccid.accounts.models import audit

    cause = _one_line(exc)
    in_use = _vault_keys_after_error()
    if in_use is not None and set(in_use) == {new_vault_key}:
        return in_use[new_vault_key], cause
    if in_use is not None and new_vault_key not in in_use:
        staged.unlink(missing_ok=True)
        outcome, what = "unchanged", "the vault is unchanged and the key file still works"
    else:
        outcome = "unknown"
        what = (f"the new vault key {new_vault_key} is kept in {staged} and {key_file} is "
                "unchanged: run 'nccid key check' (it lists the vault keys in use); if the "
                f"vault is under vault key {new_vault_key}, copy {key_file} aside and move "
                f"{staged} to {key_file} (see docs/keys.md)")
    try:
        audit(account, "vault.rekey.failed", cause=cause, outcome=outcome,
              new_vault_key=new_vault_key)
    except Exception as audit_error:  # noqa: BLE001 - the operator must still learn the state
        what += f" (the failure could not be audited: {_one_line(audit_error)})"
    if isinstance(exc, KeyboardInterrupt):
        err_console.print(f"Re-key interrupted: {what}.", highlight=False)
        raise exc
    raise UserError(f"re-key failed ({cause}): {what}") from exc


def _vault_keys_after_error() -> dict[str, int] | None:
    """{vault key: entries} read afresh, or None when the vault cannot be read."""
    from django.db import DatabaseError, connections

    from nccid.identity.service import VAULT_DB, vault_keys_in_use

    connection = connections[VAULT_DB]
    try:
        if not connection.in_atomic_block:  # a broken connection is replaced, not reused
            connection.close_if_unusable_or_obsolete()
        return vault_keys_in_use()
    except DatabaseError:
        return None


@key_app.command("fingerprint")
def key_fingerprint(
    file: Annotated[Path | None, typer.Option("--file", help="A key file (default: the configured one).")] = None,
) -> None:
    """Print the key file's public fingerprints and checksum (to verify backup copies)."""
    from nccid.config import get_settings
    from nccid.identity.keys import load_keyring

    path = file or get_settings().key_file
    # A copy given with --file is only read: its mode is not judged (a FAT/exFAT stick shows
    # 0755 and cannot change it); the live key file keeps the 0600 rule.
    keyring = load_keyring(path, copy=file is not None)
    console.print(f"key file        {path}\n"
                  f"key fingerprint {keyring.fingerprint}  (pseudonyms, UIDs: must never change)\n"
                  f"vault key       {keyring.vault_fingerprint}\n"
                  f"sha256          {hashlib.sha256(Path(path).read_bytes()).hexdigest()}",
                  highlight=False)


@key_app.command("check")
def key_check() -> None:
    """Check the key file is the one this installation's data was made with, vault key
    included, and that the vault is whole: its entries decrypt (all, or a sample of 1,000
    spread over a larger vault) and every patient of the main database has one. First it
    deletes the hidden copies of a key file a killed key write left (the check may fail)."""
    _remove_key_temporaries()
    setup_django()  # refuses a key file of another installation, or one older than a re-key
    from nccid.identity.service import get_keyring, read_vault, vault_keys_in_use

    keyring = get_keyring()
    others = {key: n for key, n in vault_keys_in_use().items() if key != keyring.vault_fingerprint}
    if others:
        listed = ", ".join(f"{n} under vault key {key}" for key, n in sorted(others.items()))
        raise UserError(
            f"the key file holds vault key {keyring.vault_fingerprint}, but the vault has entries "
            f"it cannot decrypt ({listed}): those cannot be revealed or re-keyed; restore the "
            "vault database, or the key file holding that vault key, from backup (see docs/keys.md)"
        )
    reading = read_vault()
    problems = [text for text in (_damaged(reading), _missing(reading)) if text]
    if problems:
        raise UserError("; and ".join(problems))
    console.print(f"OK: the key file matches this installation (fingerprint "
                  f"{keyring.fingerprint}, vault key {keyring.vault_fingerprint}). "
                  f"Vault: {_sound(reading)}.", highlight=False)


def _read(reading, count: int) -> str:
    """``2 of the 96 vault entries read``, or ``… of 1,000 vault entries read (a sample …)``."""
    if reading.sampled:
        return (f"{count:,} of {reading.read:,} vault entries read (a sample spread over all "
                f"{reading.entries:,})")
    return f"{count:,} of the {reading.read:,} vault entries read"


def _named(examples: list[str], count: int) -> str:
    more = f" and {count - len(examples):,} more" if count > len(examples) else ""
    return f"({', '.join(examples)}{more})"


def _damaged(reading) -> str:
    if not reading.damaged:
        return ""
    verb = ("does not decrypt to its patient's number" if reading.damaged == 1
            else "do not decrypt to their patients' numbers")
    return (f"{_read(reading, reading.damaged)} {verb} "
            f"{_named(reading.damaged_examples, reading.damaged)}: the vault database is "
            "damaged; restore the vault database from a backup (see docs/keys.md)")


def _missing(reading) -> str:
    if not reading.missing:
        return ""
    verb = "has" if reading.missing == 1 else "have"
    return (f"{reading.missing:,} of the {reading.patients:,} patients of the main database "
            f"{verb} no vault entry {_named(reading.missing_examples, reading.missing)}, so "
            "their NHS/CHI numbers cannot be revealed: the vault database is older than the "
            "main database (restored alone?) or not this installation's. Check "
            "vault_database_url ('nccid config show'), then restore the vault backup made with "
            "the main database's, or a later one (see docs/keys.md)")


def _sound(reading) -> str:
    """What a check that found nothing wrong read, in words."""
    if not reading.entries:
        entries = "it holds no entries"
    elif reading.sampled:
        entries = (f"{reading.read:,} of its {reading.entries:,} entries, a sample spread over "
                   "all of them, decrypt to their patients' numbers")
    else:
        entries = f"all {reading.read:,} vault entries decrypt to their patients' numbers"
    patients = (f"each of the {reading.patients:,} patients of the main database has a vault "
                "entry" if reading.patients else "the main database holds no patients")
    return f"{entries}; {patients}"


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
    app.command("link")(link)
    app.add_typer(vault_app, name="vault")
    app.add_typer(key_app, name="key")
