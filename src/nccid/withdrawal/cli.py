"""``nccid patient …``: withdraw a patient from the database, list withdrawals, reinstate;
``nccid study …``: remove one study from the database.

The patient commands take an NHS/CHI number or a pseudonym and print only pseudonyms.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated

import typer
from rich.table import Table

from nccid.cli.common import UserError, console, counted, err_console, setup_django

patient_app = typer.Typer(help="Patients: what is held of one, withdraw one from the database, "
                               "reinstate, move a site's hospital number to the right one.",
                          no_args_is_help=True)

study_app = typer.Typer(help="Studies: remove one from the database (an identifier found in an "
                             "image, a study sent in error).", no_args_is_help=True)

PatientArgument = Annotated[str, typer.Argument(
    help="The patient's NHS/CHI number or pseudonym (NCCID-…).", show_default=False)]
UserOption = Annotated[str, typer.Option("--user", help="Your data-manager account.")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin",
                                             help="Read the account's password from standard input.")]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with the withdrawal and "
                                                            "in the audit log): no names, dates, "
                                                            "hospital or NHS/CHI numbers.")]


def _pseudonym(text: str) -> str:
    from nccid.withdrawal.services import WithdrawalError, patient_pseudonym

    try:
        return patient_pseudonym(text)
    except WithdrawalError as exc:
        raise UserError(str(exc)) from None


def _look_up(account, pseudonym: str, *, force: bool = False):
    """The patient's holdings (audited, found or not); a patient nothing names is refused
    without showing the pseudonym worked out from a number typed, unless ``force``."""
    from nccid.withdrawal.services import WithdrawalError, look_up

    try:
        return look_up(account, pseudonym, unknown_ok=force)
    except WithdrawalError as exc:
        raise UserError(str(exc)) from None


def _describe(held) -> None:
    pseudonym = held.pseudonym
    table = Table("What", "How many", title=f"Held of {pseudonym}", title_justify="left")
    table.add_row("Images", f"{held.images:,} in {counted(held.studies, 'study', 'studies')} "
                            f"({held.bytes / 1e6:,.1f} MB)")
    table.add_row("Clinical records", f"{held.clinical_records:,}")
    table.add_row("Held for review", f"{held.held:,}")
    table.add_row("Waiting for a link", f"{held.pending:,}")
    table.add_row("Teaching cases", f"{held.teaching_cases:,}")
    table.add_row("Sites", ", ".join(held.sites) or "-")
    table.add_row("Set", held.set_name or "-")
    table.add_row("Warehouse objects", f"{held.objects:,}" + (
        f" ({held.unnamed_objects:,} no database row names)" if held.unnamed_objects else ""))
    console.print(table)
    if held.unnamed_objects:
        console.print(f"{counted(held.unnamed_objects, 'object')} in this patient's warehouse "
                      "folders are named by no database row: the databases are older than the "
                      "warehouse (restored from a backup?). Withdrawing the patient removes "
                      "them too.", highlight=False)
    if held.withdrawal is not None:
        w = held.withdrawal
        state = "complete" if w.completed_at else "interrupted: withdraw again to complete it"
        console.print(f"Withdrawn {w.requested_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC by "
                      f"{w.requested_by} ({state}).", highlight=False)
    if held.handed_out:
        console.print(f"Research hand-outs since the patient's data arrived that may include it "
                      f"({len(held.handed_out)}):", highlight=False)
        for event in held.handed_out:
            console.print(f"  {event.at.astimezone(UTC):%Y-%m-%d %H:%M} {event.username} "
                          f"{event.action} ({', '.join(event.sets) or 'sets not recorded'})",
                          highlight=False)


@patient_app.command("show")
def patient_show(patient: PatientArgument, user: UserOption, password_stdin: PasswordStdin = False) -> None:
    """What the database holds of a patient, and which research hand-outs may include it."""
    setup_django()
    from nccid.identity.cli import login_data_manager

    account = login_data_manager(user, password_stdin, "patient.show",
                                 doing="look a patient up", identifying=True)
    _describe(_look_up(account, _pseudonym(patient)))


@patient_app.command("withdraw", help=(
    "Remove everything held of a patient and refuse them from now on (cannot be undone).\n\n"
    "Images, header and clinical JSON leave the warehouse; image, clinical, held, waiting and "
    "teaching rows leave the database; the vault forgets the number; the catalogue is "
    "refreshed without them. Running it again completes an interrupted withdrawal."))
def patient_withdraw(
    patient: PatientArgument,
    reason: ReasonOption,
    user: UserOption,
    password_stdin: PasswordStdin = False,
    yes: YesOption = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Withdraw even when nothing in the database or the warehouse names the "
                        "patient (to refuse a patient not yet sent); without it, such a "
                        "pseudonym is taken for a typing error.")] = False,
) -> None:
    """Withdraw a patient (``withdrawal.services.withdraw``), after showing what is held."""
    setup_django()
    from nccid.identity.cli import login_data_manager
    from nccid.withdrawal.services import WithdrawalError, check_reason, withdraw

    account = login_data_manager(user, password_stdin, "patient.withdraw", reason=reason,
                                 doing="withdraw a patient", identifying=True)
    pseudonym = _pseudonym(patient)
    try:
        check_reason(reason)  # before showing what is held and asking
    except WithdrawalError as exc:
        raise UserError(str(exc)) from None
    try:
        held = _look_up(account, pseudonym, force=force)
    except UserError as exc:
        raise UserError(f"{exc} (to refuse a patient not yet sent, add --force)") from None
    if not held.found:  # forced: the look-up is audited, the pseudonym not shown yet
        console.print("Nothing in the database or the warehouse names this patient: "
                      "withdrawing puts them on the list, so intake refuses them.")
        question = "Withdraw this patient, not yet sent? This cannot be undone"
    else:
        _describe(held)
        question = f"Withdraw {pseudonym}? This deletes the data above and cannot be undone"
    if not yes and not typer.confirm(question, err=True):
        raise UserError("nothing was changed")
    try:
        removed = withdraw(account, pseudonym, reason)
    except WithdrawalError as exc:
        raise UserError(str(exc)) from None
    except (Exception, KeyboardInterrupt) as exc:
        _say_if_interrupted(pseudonym, exc)
        raise
    parts = (counted(removed.images, "image"),
             counted(removed.clinical_records, "clinical record"),
             f"{removed.held:,} held and {counted(removed.pending, 'waiting image')}",
             counted(removed.teaching_cases, "teaching case"),
             f"{counted(removed.objects, 'object')} from the warehouse")
    console.print(f"Withdrew {pseudonym}: removed {', '.join(parts)}; "
                  f"{counted(removed.receipts, 'site receipt')} marked removed. "
                  "Intake now refuses this patient.", highlight=False)
    err_console.print("Tell the recipients of the hand-outs listed above, if any.", highlight=False)


def _say_if_interrupted(pseudonym: str, exc: BaseException) -> None:
    """A failure part-way (the warehouse, the database) that left the withdrawal listed but
    not complete is said as such, with what failed, as the portal says it: one line and exit
    1 for an outage; Ctrl-C, or any other error (a bug, with its traceback), after the line."""
    from nccid.cli.main import _is_environment_error, environment_message
    from nccid.withdrawal.models import Withdrawal

    try:
        interrupted = Withdrawal.objects.filter(pseudonym=pseudonym, completed_at=None).exists()
    except Exception:  # noqa: BLE001 - the database may be what failed: the error says so
        return
    if not interrupted:
        return
    what = f"the withdrawal of {pseudonym} was interrupted"
    advice = "withdraw the patient again to complete it (intake already refuses this patient)"
    if isinstance(exc, Exception) and _is_environment_error(exc):
        raise UserError(f"{what} ({environment_message(exc)}): {advice}") from exc
    err_console.print(f"error: {what}: {advice}", highlight=False)


def _withdrawal_out(w) -> dict:
    return {"pseudonym": w.pseudonym,
            "requested_at": w.requested_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "requested_by": w.requested_by, "reason": w.reason,
            "state": "complete" if w.completed_at else "interrupted"}


@patient_app.command("withdrawn")
def patient_withdrawn(user: UserOption, password_stdin: PasswordStdin = False,
                      limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                                          help="At most this many patients.")] = 100,
                      as_json: Annotated[bool, typer.Option(
                          "--json", help="One JSON object a line (pseudonym, requested_at, "
                                         "requested_by, reason, state), for scripts.")] = False) -> None:
    """List withdrawn patients, newest first."""
    setup_django()
    from nccid.identity.cli import login_data_manager
    from nccid.withdrawal.models import Withdrawal

    login_data_manager(user, password_stdin, "patient.withdrawn",
                       doing="list withdrawn patients")
    withdrawals = [_withdrawal_out(w) for w in Withdrawal.objects.all()[:limit]]
    if as_json:
        for row in withdrawals:
            typer.echo(json.dumps(row))
        return
    table = Table()
    # Pseudonym and date never cut or wrapped (a pipe is 80 columns): reinstate needs the
    # pseudonym whole; the other columns wrap, folding a long word rather than cutting it.
    for heading, whole in (("Pseudonym", True), ("When (UTC)", True), ("By", False),
                           ("Why", False), ("State", True)):
        table.add_column(heading, no_wrap=whole, overflow="ellipsis" if whole else "fold")
    for row in withdrawals:
        table.add_row(row["pseudonym"], row["requested_at"][:16].replace("T", " "),
                      row["requested_by"], row["reason"], row["state"])
    console.print(table)


@patient_app.command("reinstate")
def patient_reinstate(patient: PatientArgument, reason: ReasonOption, user: UserOption,
                      password_stdin: PasswordStdin = False) -> None:
    """Take a patient off the withdrawal list: intake accepts them again (nothing comes back)."""
    setup_django()
    from nccid.identity.cli import login_data_manager
    from nccid.withdrawal.services import WithdrawalError, reinstate

    account = login_data_manager(user, password_stdin, "patient.reinstate", reason=reason,
                                 doing="reinstate a patient", identifying=True)
    pseudonym = _pseudonym(patient)
    try:
        if not reinstate(account, pseudonym, reason):
            raise UserError(f"{pseudonym} is not withdrawn")
    except WithdrawalError as exc:
        raise UserError(str(exc)) from None
    console.print(f"{pseudonym} is no longer withdrawn: sites may send this patient again.",
                  highlight=False)


@patient_app.command("relink", help=(
    "Move a site's hospital number to the right patient, with the images the site sent "
    "under the patient it was linked to (a sheet gave the number a wrong NHS/CHI number).\n\n"
    "For a number already linked to the right patient, moves the site's images filed before "
    "its sheet under the hospital number read as an NHS/CHI number (it passes the check).\n\n"
    "The images are rewritten for the right patient (pseudonym, dates under shift-dates, set) "
    "and the catalogue refreshed. Running it again finishes an interrupted relink. The "
    "numbers typed are checked and never shown, logged or audited."))
def patient_relink(
    site: Annotated[str, typer.Option("--site", help="The site's code.", show_default=False)],
    hospital_number: Annotated[str, typer.Option(
        "--hospital-number", help="The hospital number the site's images carry.",
        show_default=False)],
    nhs_number: Annotated[str, typer.Option(
        "--nhs-number", help="The patient's right NHS/CHI number (as the corrected sheet gives it).",
        show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log): no names, "
                                                         "dates, hospital or NHS/CHI numbers.")],
    user: UserOption,
    password_stdin: PasswordStdin = False,
    yes: YesOption = False,
    include_unrecorded: Annotated[bool, typer.Option(
        "--include-unrecorded",
        help="Move too the site's images under the wrong patient stored before images recorded "
             "the hospital number that linked them (by an older release): they may have been "
             "sent by that patient's own NHS/CHI number, so without this they stay. Only if you "
             "know the site sent them by this hospital number.")] = False,
) -> None:
    """Relink a hospital number (``withdrawal.relink.relink``), after showing what moves."""
    setup_django()
    from nccid.identity.cli import login_data_manager
    from nccid.withdrawal.relink import RelinkError, plan, relink
    from nccid.withdrawal.services import WithdrawalError

    account = login_data_manager(user, password_stdin, "patient.relink", reason=reason,
                                 doing="relink a hospital number", identifying=True)
    try:
        found = plan(account, site, hospital_number, nhs_number, reason,
                     include_unrecorded=include_unrecorded)
    except WithdrawalError as exc:
        raise UserError(str(exc)) from None
    _describe_relink(found)
    if not yes and not typer.confirm("Move them?", err=True):
        raise UserError("nothing was changed")
    try:
        done = relink(account, site, hospital_number, nhs_number, reason,
                      include_unrecorded=include_unrecorded, refresh=False)
    except RelinkError as exc:
        raise UserError(str(exc)) from None
    except (Exception, KeyboardInterrupt):
        err_console.print("error: the relink was interrupted: run the same command again to "
                          "finish it (the hospital number already names the right patient)",
                          highlight=False)
        raise
    console.print(f"Relinked: the hospital number of site {found.site_code} names "
                  f"{done.new_pseudonym}; moved {counted(done.images, 'image')} "
                  f"({counted(done.receipts, 'study receipt')}, "
                  f"{counted(done.teaching_cases, 'teaching case')}) from {done.old_pseudonym} "
                  f"into the {done.set_name} set." + (
                      f" {counted(done.gone, 'planned image')} no longer stored "
                      "(withdrawn or removed meanwhile)." if done.gone else "") + (
                      _unrecorded_moved(done, found.misfiled) if done.unrecorded else ""),
                  highlight=False)
    _refresh_after_relink()
    _say_what_is_left(found.site_code, done)


def _unrecorded_moved(done, misfiled: bool) -> str:
    """The result's word on the images an older release stored: as the preview said them."""
    if misfiled:
        return (f" {done.unrecorded:,} of them, {_UNRECORDED}, came by the hospital number read "
                f"as an NHS/CHI number (nothing links {done.old_pseudonym}).")
    return (f" {done.unrecorded:,} of them, {_UNRECORDED}, moved only because you asked "
            f"(--include-unrecorded): they {_either(done.old_pseudonym)}.")


def _describe_relink(found) -> None:
    resumed = " (finishing an interrupted relink)" if found.resuming else ""
    if found.misfiled:
        console.print(f"At site {found.site_code}, the hospital number already names "
                      f"{found.new_pseudonym}; images sent before its sheet were filed under "
                      f"{found.old_pseudonym}, the hospital number read as an NHS/CHI number"
                      f"{resumed}.", highlight=False)
    else:
        console.print(f"At site {found.site_code}, the hospital number is linked to "
                      f"{found.old_pseudonym}; it will name {found.new_pseudonym}{resumed}.",
                      highlight=False)
    into = f"the {found.new_set} set" if found.new_set else "the set the site's rule gives"
    by_number = "" if found.misfiled or found.unrecorded else " by this hospital number"
    console.print(f"{counted(found.images, 'image')} in {counted(found.studies, 'study', 'studies')} "
                  f"the site sent under {found.old_pseudonym}{by_number} move to "
                  f"{found.new_pseudonym}, into {into}.", highlight=False)
    _describe_unrecorded(found)
    if found.left:
        console.print(f"{counted(found.left, 'other image')} the site sent under "
                      f"{found.old_pseudonym} by NHS/CHI number or another hospital number "
                      f"{_plural(found.left, 'stays (it is', 'stay (they are')} that patient's).",
                      highlight=False)


_UNRECORDED = "stored before images recorded the number that linked them"


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _either(old: str) -> str:
    return f"may have been sent by the NHS/CHI number of {old} itself, not this hospital number"


def _describe_unrecorded(found) -> None:
    """The images stored by an older release, which record no linking number: said apart,
    moving (asked for) or staying, so the data manager decides knowing what they are."""
    old = found.old_pseudonym
    if found.unrecorded and found.misfiled:
        console.print(f"{found.unrecorded:,} of them "
                      f"{_plural(found.unrecorded, 'was', 'were')} {_UNRECORDED}: nothing links "
                      f"{old}, so they too came by the hospital number read as an NHS/CHI number.",
                      highlight=False)
    elif found.unrecorded:
        console.print(f"{found.unrecorded:,} of them {_plural(found.unrecorded, 'was', 'were')} "
                      f"{_UNRECORDED} (by an older release), so the number they came under is "
                      "unknown: they move only because you asked (--include-unrecorded), and "
                      f"{_either(old)}.", highlight=False)
    if found.unrecorded_left:
        then = ("The interrupted relink did not include them." if found.resuming else
                "If you know the site sent them by this hospital number, run the command with "
                "--include-unrecorded to move them too: once the number is relinked, the "
                "command cannot move them.")
        console.print(f"{counted(found.unrecorded_left, 'image')} the site sent under {old} "
                      f"{_plural(found.unrecorded_left, 'was', 'were')} {_UNRECORDED} (by an "
                      f"older release): they {_either(old)}, and nothing can tell. They stay "
                      f"under {old}. {then}", highlight=False)


def _refresh_after_relink() -> None:
    """The moved rows' catalogue parts are marked: a refresh that fails leaves them to the next."""
    from nccid.cli.main import _is_environment_error, environment_message
    from nccid.withdrawal.relink import refresh_catalogue

    try:
        refresh_catalogue()
    except Exception as exc:
        if not _is_environment_error(exc):
            raise
        err_console.print(f"The catalogue could not be refreshed ({environment_message(exc)}): "
                          "the next refresh ('nccid warehouse catalogue') shows the move.",
                          highlight=False)


def _say_what_is_left(site_code: str, done) -> None:
    if done.unrecorded_left:
        console.print(f"{counted(done.unrecorded_left, 'image')} {_UNRECORDED} "
                      f"{_plural(done.unrecorded_left, 'stays', 'stay')} under "
                      f"{done.old_pseudonym}: they {_either(done.old_pseudonym)}. If they were "
                      "this hospital number's, remove their studies ('nccid study remove') and "
                      "have the site send them again.", highlight=False)
    if done.forgotten:
        console.print(f"{done.old_pseudonym} named nobody else: its vault entry (the hospital "
                      "number kept as an NHS/CHI number) and its set were removed.",
                      highlight=False)
    if done.clinical_left:
        console.print(
            f"Left for you: the {', '.join(done.clinical_left)} clinical record(s) site "
            f"{site_code}'s earlier sheet made under {done.old_pseudonym} with this hospital "
            f"number (the real patient's data under the wrong pseudonym). No command removes "
            f"one record: if nothing else is held of {done.old_pseudonym} ('nccid patient show'), "
            f"withdraw it (then reinstate it if the number belongs to a real patient); otherwise "
            f"ask the data's recipients to disregard it (docs/withdrawal.md).", highlight=False)
    if done.handed_out:
        err_console.print(f"{counted(done.handed_out, 'research hand-out')} since these images "
                          f"arrived may hold them under {done.old_pseudonym}: tell their "
                          f"recipients ('nccid patient show {done.new_pseudonym}' lists them).",
                          highlight=False)


@study_app.command("remove", help=(
    "Remove one study everywhere and refuse it from now on (cannot be undone).\n\n"
    "Its images, header JSON, held and waiting images and teaching cases go; the patient's "
    "other studies and clinical records stay. The site's receipt says the study was removed."))
def study_remove(
    study_uid: Annotated[str, typer.Argument(
        help="The Study Instance UID as stored (as researchers see it) or as the site sent it.",
        show_default=False)],
    reason: ReasonOption,
    user: UserOption,
    password_stdin: PasswordStdin = False,
    yes: YesOption = False,
) -> None:
    """Remove a study (``withdrawal.services.remove_study``), after showing what is held."""
    setup_django()
    from nccid.identity.cli import login_data_manager
    from nccid.withdrawal.services import WithdrawalError, look_up_study, remove_study

    account = login_data_manager(user, password_stdin, "study.remove", reason=reason,
                                 doing="remove a study", identifying=True)
    try:
        held = look_up_study(account, study_uid)  # audited: it names the patient
    except WithdrawalError as exc:
        raise UserError(str(exc)) from None
    stored_uid = held.study_uid
    _describe_study(held)
    if not yes and not typer.confirm("Remove this study? This cannot be undone", err=True):
        raise UserError("nothing was changed")
    try:
        removed = remove_study(account, stored_uid, reason)
    except WithdrawalError as exc:
        raise UserError(str(exc)) from None
    console.print(f"Removed study {stored_uid}: {counted(removed.images, 'image')}, "
                  f"{removed.held:,} held and {removed.pending:,} waiting, "
                  f"{counted(removed.teaching_cases, 'teaching case')}. "
                  "Intake now refuses this study.", highlight=False)


def _describe_study(held) -> None:
    """Everything the removal deletes (as ``patient show`` lists a patient's holdings)."""
    console.print(f"Held of study {held.study_uid}:", highlight=False)  # the UID whole, not wrapped
    table = Table("What", "How many")
    table.add_row("Stored images", f"{held.images:,}")
    table.add_row("Held for review", f"{held.held:,}")
    table.add_row("Waiting for a link", f"{held.pending:,}")
    table.add_row("Teaching cases", f"{held.teaching_cases:,}")
    table.add_row("Patients", ", ".join(held.patients) or "-")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
    app.add_typer(patient_app, name="patient")
    app.add_typer(study_app, name="study")
