"""System-wide commands: ``init``, ``config show``, ``run`` and ``manage``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Annotated

import typer

from nccid.config import get_settings

from .common import (
    DATABASE_SETTINGS,
    UserError,
    check_databases,
    console,
    counted,
    require_free_port,
    setup_django,
    sqlite_file,
)

config_app = typer.Typer(help="Effective settings.", no_args_is_help=True)


# The demo's accounts share a published password: never added to a real installation.
NOT_A_DEMO_HOME = {
    "init": "this home has sites/accounts of its own: the demo loads only into a new home; "
            "run 'nccid init' without --demo",
    "run": "this home has sites/accounts of its own: 'nccid run' is the demo; start the "
           "services with 'nccid serve' and 'nccid node'",
}
# Loaded before the demo marked its progress: how far it got cannot be told, and serving it
# would open accounts with a published password.
OLDER_DEMO_HOME = ("a demo home from an older version: delete {home} (or set NCCID_HOME "
                   "elsewhere) to load the demo again")
# Sites or accounts added to a demo home (the README's site steps run in the default home):
# serving it would put them beside accounts whose password is published.
ADDED_TO_DEMO_HOME = ("this demo home ({home}) has sites/accounts added to it ({added}): the "
                      "demo's accounts share a published password, so it is not served beside "
                      "them. A real installation needs a new NCCID_HOME (set it, then 'nccid "
                      "init' and add them there); delete {home} to start the demo afresh")


def initialise(demo: bool = False, quiet: bool = False, command: str = "init") -> None:
    """Create the data directory, databases, key file and warehouse. Safe to run again.
    With ``demo``, refuse (naming ``command``) a home with sites or accounts of its own."""
    settings = get_settings()
    for name in ("home", "log_dir", "pending_dir"):
        _make_folder(getattr(settings, name), name)
    setup_django(check_key=False)
    with _removing_database_files_made_if_refused():
        _set_up_databases(demo, command)
    from nccid.identity.keys import create_key_file
    from nccid.identity.service import check_installation_key, record_installation_key

    if not settings.key_file.exists():
        create_key_file(settings.key_file)
        if not quiet:
            console.print(f"Created key file {settings.key_file} (mode 0600): back it up now.")
    record_installation_key()
    check_installation_key()
    from nccid.warehouse.deid_profile import check_deid_profile

    check_deid_profile()  # before the upgrade below rewrites anything under the setting's rule
    from nccid.warehouse.service import get_warehouse

    get_warehouse().ensure()
    _upgrade_warehouse(quiet)
    if demo:
        from nccid.demo import load_demo

        load_demo(console=None if quiet else console)
    if not quiet:
        console.print(f"Initialised nccid in {settings.home}")


def _set_up_databases(demo: bool, command: str) -> None:
    """Migrate both databases, after and before the refusals that stop init before any key
    is made or recorded."""
    from django.core.management import call_command

    from nccid.identity.keys import KeyFileError
    from nccid.identity.service import installation_has_data

    # A server that is down, or the two databases swapped: one line naming the settings.
    check_databases(migrated=False)
    _refuse_databases_of_two_installations()
    call_command("migrate", database="default", verbosity=0, interactive=False)
    call_command("migrate", database="vault", verbosity=0, interactive=False)
    check_databases(migrated=True)  # each holds its own tables: not swapped, before any key
    if demo:
        _require_demo_home(NOT_A_DEMO_HOME[command])
    key_file = get_settings().key_file
    if not key_file.exists() and installation_has_data():  # never a silent new key over data
        raise KeyFileError(
            f"key file {key_file} is missing but this installation already holds "
            "data made with a key: restore the key file from backup (see docs/keys.md)"
        )


# What SQLite makes beside a database file while it is written.
_SQLITE_SIDE_FILES = ("", "-journal", "-wal", "-shm")


@contextmanager
def _removing_database_files_made_if_refused() -> Iterator[None]:
    """Delete the SQLite files made inside it when it ends in an error (a refusal, or Ctrl-C):
    connecting makes the file a mistyped sqlite: URL names, and a refused init is to leave
    nothing behind it made. A file there before is never removed."""
    from django.db import connections

    made = {alias: [path for path in _sqlite_paths(connections[alias])
                    if not os.path.lexists(path)] for alias in DATABASE_SETTINGS}
    try:
        yield
    except BaseException:
        for alias, paths in made.items():
            if paths:
                connections[alias].close()
            for path in paths:
                with suppress(FileNotFoundError):
                    os.remove(path)
        raise


def _sqlite_paths(connection) -> list[str]:
    """The files of an SQLite database named by a path (none for a server, or in memory)."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return []
    name = str(connection.settings_dict["NAME"])
    return [name + side for side in _SQLITE_SIDE_FILES]


def _refuse_databases_of_two_installations() -> None:
    """Before either database is set up: a main database holding patients beside a vault
    holding none (a mistyped vault_database_url: a new vault would take their numbers from
    then on), or a vault holding entries beside a main database never used (a mistyped
    database_url)."""
    from django.db import connections

    from nccid.identity.service import main_database_in_use, main_patient_count, vault_entry_count

    main = f"the main database in database_url{sqlite_file(connections['default'])}"
    vault = f"the vault database in vault_database_url{sqlite_file(connections['vault'])}"
    patients, entries = main_patient_count(), vault_entry_count()
    if patients and not entries:
        raise UserError(
            f"{main} holds {counted(patients, 'patient')}, but {vault} holds no vault entry: it "
            "is not this installation's vault (their NHS/CHI numbers are in the one they were "
            "imported with). Check vault_database_url ('nccid config show'); if that vault is "
            "lost, restore it from a backup (see docs/keys.md). init stopped before setting "
            "either database up")
    if entries and not main_database_in_use():
        raise UserError(
            f"{vault} holds {counted(entries, 'vault entry', 'vault entries')}, but {main} "
            "holds no site, account or patient: it is not this installation's main database. "
            "Check database_url ('nccid config show'); if that database is lost, restore it "
            "from a backup (a new installation needs a new vault database too). init stopped "
            "before setting either database up")


def _upgrade_warehouse(quiet: bool) -> None:
    """What an older release left in the warehouse, brought up to
    date: clinical JSON with dates of another rule rewritten, the catalogue refreshed; and
    the withdrawal and study removal lists and the warehouse's markers of them made to agree."""
    from nccid.warehouse.storage import StorageError
    from nccid.warehouse.upgrade import upgrade_warehouse

    try:
        done = upgrade_warehouse()
    except (StorageError, OSError) as exc:
        raise UserError(f"the warehouse was not brought up to date: {exc} (run 'nccid init' "
                        "again once it answers)") from exc
    if quiet:
        return
    if done.withdrawals_reapplied:
        console.print(f"[red]The database lacked {len(done.withdrawals_reapplied):,} withdrawal(s) "
                      "the warehouse records (restored from a backup made before them): "
                      f"re-applied {', '.join(done.withdrawals_reapplied)}[/]: what the backup "
                      "brought back of them is removed again and intake refuses them "
                      "(audited patient.withdraw.reapplied).", highlight=False)
    if done.markers_written:
        console.print(f"Marked {done.markers_written:,} withdrawal(s) in the warehouse "
                      "(withdrawn/), so a database restored from an older backup cannot "
                      "forget them.")
    if done.stale_markers_removed:
        console.print(f"Removed {len(done.stale_markers_removed):,} withdrawal marker(s) of "
                      "patients the database records as reinstated since.")
    if done.studies_reapplied:
        console.print(f"[red]The database lacked {len(done.studies_reapplied):,} study removal(s) "
                      "the warehouse records (restored from a backup made before them): "
                      f"re-applied {', '.join(done.studies_reapplied)}[/]: what the backup brought "
                      "back of them is removed again and intake refuses them (audited "
                      "study.remove.reapplied).", highlight=False, soft_wrap=True)
    if done.study_markers_written:
        console.print(f"Marked {done.study_markers_written:,} study removal(s) in the warehouse "
                      "(withdrawn/studies/), so a database restored from an older backup cannot "
                      "forget them.")
    if done.clinical_rewritten is not None:
        console.print(f"Rewrote {done.clinical_rewritten:,} clinical record(s) in the warehouse "
                      "under this deployment's date rule (deid_profile).")
    if done.catalogue_refreshed:
        console.print("Refreshed the catalogue (twice: the previous version's files are gone).")


def _require_demo_home(refusal: str) -> None:
    """Before anything else is made: a new home, or one the demo was loaded into, only."""
    from nccid.demo import demo_state

    state = demo_state()
    if state == "older demo home":
        raise UserError(OLDER_DEMO_HOME.format(home=get_settings().home))
    refuse_added_to_demo_home(state)
    if state == "not a demo home":
        raise UserError(refusal)


def refuse_added_to_demo_home(state: str | None = None) -> None:
    """Refuse to go on in a demo home that sites or accounts were added to (``nccid run``,
    ``init --demo``, ``serve``, ``node``): its own would sit beside the demo's published
    password. A demo home alone, or a real one, passes. Django must be set up."""
    from nccid.demo import demo_state, not_the_demos

    if (state or demo_state()) != "demo home with its own":
        return
    added = not_the_demos()
    named = ", ".join(added[:3]) + (f" and {len(added) - 3} more" if len(added) > 3 else "")
    raise UserError(ADDED_TO_DEMO_HOME.format(home=get_settings().home, added=named))


def _make_folder(folder, name: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        setting = "NCCID_HOME" if name == "home" else name
        raise UserError(f"cannot create the folder {folder} ({setting}): {exc.strerror}") from None


def init(
    demo: Annotated[bool, typer.Option("--demo", help="Also load synthetic demo sites, accounts and data (a new home only).")] = False,
) -> None:
    """Create the database, key file and warehouse (idempotent; never replaces a key)."""
    initialise(demo=demo)


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings, secrets masked."""
    console.print_json(json.dumps(get_settings().masked()))


def run(
    host: Annotated[str | None, typer.Option("--host", help="Address the portal listens on (default: portal_host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="The portal's port (default: portal_port).")] = None,
    node_port: Annotated[int | None, typer.Option("--node-port", help="The DICOM node's port (default: node_port).")] = None,
) -> None:
    """The demo: load synthetic sites, accounts and data into a new home (refused for a home
    with sites or accounts of its own), then run the portal and the DICOM node together, and
    refresh the catalogue within a minute of new data (no scheduled job runs for the demo)."""
    settings = get_settings()
    host = host or settings.portal_host
    port = settings.portal_port if port is None else port  # --port 0 is refused, not the default
    node_port = settings.node_port if node_port is None else node_port
    require_free_port(host, port, "portal", "--port")
    require_free_port(settings.node_host, node_port, "DICOM node", "--node-port")
    initialise(demo=True, command="run")
    from nccid.warehouse.refresher import REFRESH_EVERY, CatalogueRefresher

    exe = [sys.executable, "-m", "nccid.cli.main"]
    portal = exe + ["serve", "--host", host, "--port", str(port)]
    node = exe + ["node", "--port", str(node_port)]
    environment = demo_environment(os.environ)
    children = [_start_child(portal, environment), _start_child(node, environment)]
    console.print(f"Portal: http://{host}:{port}/  DICOM node: AE title {settings.node_ae_title} "
                  f"on port {node_port}. Ctrl-C stops both. New data reach researchers at the next "
                  f"catalogue refresh, checked every {REFRESH_EVERY} s.")
    refresher = CatalogueRefresher()
    refresher.start()
    try:
        _supervise(children)
    finally:
        refresher.stop(timeout=_STOP_GRACE_SECONDS)
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL)]
    if failed:
        raise UserError("a service stopped unexpectedly; see the messages above")


# Each stops both services: TERM (systemd, docker, kill), HUP (the terminal closed), QUIT.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_STOP_GRACE_SECONDS = 30
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def demo_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The demo's services accept NHS test-range numbers (its synthetic people have them, and
    so do the sheets anyone trying its portal makes), unless NCCID_ACCEPT_TEST_NUMBERS says
    otherwise: ``nccid run`` runs only in a demo home."""
    return {**environ, "NCCID_ACCEPT_TEST_NUMBERS":
            environ.get("NCCID_ACCEPT_TEST_NUMBERS") or "true"}


def _start_child(command: list[str], environment: dict[str, str]) -> subprocess.Popen:
    """A service in a session of its own, so a terminal's HUP or Ctrl-C reaches only this
    parent, which stops the children with TERM; on Linux the child is also sent TERM if the
    parent dies without doing so (killed with -9), so no service outlives it holding a port."""
    on_linux = sys.platform.startswith("linux")
    return subprocess.Popen(command, start_new_session=True, env=environment,
                            preexec_fn=_die_with_parent(os.getpid()) if on_linux else None)


def _die_with_parent(parent_pid: int):
    def arrange() -> None:  # runs in the child between fork and exec
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def _supervise(children: list[subprocess.Popen]) -> None:
    """Wait until a stop signal, Ctrl-C or either child ending; then stop both and wait."""

    def stop(*_) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    for signum in _STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        while all(child.poll() is None for child in children):
            try:
                children[0].wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for child in children:
            try:
                child.wait(timeout=_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# Django commands that change accounts where nccid has an audited command of its own, which
# also sets what nccid reads (role, site, research sets): refused, saying which to use.
# The others (changepassword, shell, loaddata) are audited by accounts.signals.
NCCID_DOES_IT = {
    "createsuperuser": "nccid user add USERNAME --role admin (a superuser with the "
                       "administrator's role; createsuperuser made a site uploader with no site)",
}


def manage(ctx: typer.Context) -> None:
    """Run a Django management command (e.g. 'nccid manage changepassword USERNAME')."""
    own = NCCID_DOES_IT.get(ctx.args[0]) if ctx.args else None
    if own is not None:
        raise UserError(f"'nccid manage {ctx.args[0]}' is not used here: run {own}")
    setup_django(check_key=False)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["nccid manage", *ctx.args])


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(config_app, name="config")
    app.command("run")(run)
    app.command("manage", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                add_help_option=False)(manage)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nccid.web.settings")
