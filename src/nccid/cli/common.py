"""Helpers every command uses: Django start-up with the key check, and user-facing errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """A mistake the user can fix: printed as one line on stderr, exit status 1, no traceback."""


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 image``, ``3 images``, ``2 studies``: a count with its noun in the right number."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def require_free_port(host: str, port: int, what: str, option: str) -> None:
    """Fail with one clear line when ``host:port`` is taken, before anything starts on it
    (gunicorn would retry for seconds, then exit with its own messages)."""
    import socket

    if not 1 <= port <= 65535:
        raise UserError(f"{option} must be a port between 1 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(address)
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror} "
                            f"(is nccid already running? stop it, or choose another port with "
                            f"{option})") from None


def fail(message: str, code: int = 1) -> NoReturn:
    # Escaped: a message may hold brackets ("[storage_options]") that Rich would eat as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise SystemExit(code)


_django_ready = False

# Each Django database alias and the setting an operator changes to fix it.
DATABASE_SETTINGS = {"default": "database_url", "vault": "vault_database_url"}
_USABLE_ENGINES = ("django.db.backends.sqlite3", "django.db.backends.postgresql")
_URL_HINT = "use sqlite:///path/to/file or postgres://user@host:port/dbname"


def setup_django(check_key: bool = True, *, needs_key: bool = True) -> None:
    """Start Django once; unless told otherwise, refuse to run against databases that cannot
    be reached or are not migrated, with a missing or wrong key, or under a ``deid_profile``
    other than the one the installation's data were de-identified under.

    ``needs_key=False`` (research reads: ``nccid research``, ``nccid validate``,
    ``nccid.research.open``) checks the databases but never the key: those read the catalogue
    and the main database only, and a research host must not hold the key file (with it, an
    NHS number gives its pseudonym and a shifted date its real one: docs/keys.md)."""
    global _django_ready
    if not _django_ready:
        from nccid.config import get_settings

        settings = get_settings()
        check_database_urls(settings)
        _check_log_dir(settings.log_dir)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nccid.web.settings")
        import django

        django.setup()
        _django_ready = True
    if check_key:
        # Research reads never open the vault either: a research host needs no credentials for it.
        check_databases(migrated=True, aliases=DATABASE_SETTINGS if needs_key else ("default",))
    if check_key and needs_key:
        from nccid.identity.service import check_installation_key

        check_installation_key()
        from nccid.warehouse.deid_profile import check_deid_profile

        check_deid_profile()  # before anything is written under another profile than the data's


def check_database_urls(settings) -> None:
    """Refuse a database URL Django could not use, naming the setting (never the URL: it may
    hold a password)."""
    import dj_database_url

    for name in DATABASE_SETTINGS.values():
        url = getattr(settings, name)
        try:
            engine = dj_database_url.parse(url)["ENGINE"]
        except dj_database_url.UnknownSchemeError:
            engine = None
        except ValueError:  # ParseError: a port that is not a number, an unquoted character
            raise UserError(f"{name} is not a valid URL (is the port a number? are special "
                            f"characters %-quoted?): {_URL_HINT}") from None
        if "://" not in url:
            raise UserError(f"{name} is not a database URL: {_URL_HINT}")
        if engine not in _USABLE_ENGINES:
            raise UserError(f"{name} has the scheme {url.partition('://')[0]!r}, which nccid "
                            f"cannot use: {_URL_HINT}")
    _refuse_one_database_for_both(settings.database_url, settings.vault_database_url)


# Names a PostgreSQL client gives the server on this machine (no host: its socket).
_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


def _refuse_one_database_for_both(main_url: str, vault_url: str) -> None:
    """The vault must be a database of its own: one for both would put the NHS/CHI numbers
    beside everything else, and its tables are never made (each database's migration record
    says the other's migrations were applied)."""
    main, vault = _database_identity(main_url), _database_identity(vault_url)
    same = main == vault
    if not same and main[0] == vault[0] == "sqlite":
        same = _same_file(main[1], vault[1])  # a hard link, or one folder by two paths
    if same:
        raise UserError(f"database_url and vault_database_url name the same database "
                        f"({main[-1]}): the vault needs a database of its own; check both "
                        "('nccid config show')")


def _database_identity(url: str) -> tuple:
    """What makes two URLs one database: the file's real path, or server, port, database
    and search path (the role does not matter). Its last item names it (never a password)."""
    import dj_database_url

    config = dj_database_url.parse(url)
    if config["ENGINE"].endswith("sqlite3"):
        path = os.path.realpath(config["NAME"])
        return ("sqlite", path, f"file {path}")
    extra = config.get("OPTIONS") or {}  # ?host=…&port=… land here, as psycopg reads them
    host = str(config.get("HOST") or extra.get("host") or "")
    # a socket folder is its own server (two folders, two servers); no host is the default one
    host = os.path.realpath(host) if host.startswith("/") else host.lower()
    host = "localhost" if host in _LOCAL_HOSTS else host
    port = int(config.get("PORT") or extra.get("port") or 5432)
    options = extra.get("options", "")
    return ("postgresql", host, port, config["NAME"], options,
            f"database {config['NAME']} on {host}:{port}")


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # one does not exist yet: different files
        return False


def _check_log_dir(log_dir) -> None:
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "nccid.log", "a"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write the log folder {log_dir} (log_dir): {exc.strerror}") from None


def check_databases(migrated: bool, aliases: Iterable[str] = tuple(DATABASE_SETTINGS)) -> None:
    """Connect to the databases (both unless told; and, if asked, find every migration applied),
    so a server that is down or a database never set up is one line naming the setting to check."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, connections

    for alias in aliases:
        name = DATABASE_SETTINGS[alias]
        connection = connections[alias]
        if migrated and _absent_file(connection):  # not made here: connecting would create it
            raise UserError(f"the database in {name}{sqlite_file(connection)} does not exist: "
                            f"{_NEVER_SET_UP.format(name=name)}")
        try:
            connection.ensure_connection()
            pending, applied = _migrations(connection) if migrated else (0, 0)
        except (DatabaseError, ImproperlyConfigured) as exc:
            hint = ("that its folder exists and can be written" if connection.vendor == "sqlite"
                    else "that the server is running")
            raise UserError(f"cannot use the database in {name}{sqlite_file(connection)} "
                            f"({first_line(exc)}): check {name} ('nccid config show') and "
                            f"{hint}") from None
        if pending and not applied:
            raise UserError(f"the database in {name}{sqlite_file(connection)} is not set up "
                            f"(empty: nccid never made its tables there): "
                            f"{_NEVER_SET_UP.format(name=name)}")
        if pending:  # a newer release's migrations
            raise UserError(f"the database in {name}{sqlite_file(connection)} is not set up "
                            f"({counted(pending, 'migration')} not applied): run 'nccid init'")
        _require_own_tables(alias, complete=migrated)


def _require_own_tables(alias: str, complete: bool) -> None:
    """Refuse a database holding the other part's tables (the vault's where the main one
    belongs, or the reverse) and, when ``complete``, one lacking any of its own. Its migration
    record cannot tell (each database records every migration, those of the other's tables
    included), so the tables themselves are looked at."""
    from django.db import connections

    connection = connections[alias]
    present = set(connection.introspection.table_names())
    missing = sorted(_tables_of(alias) - present) if complete else []
    name = DATABASE_SETTINGS[alias]
    (other,) = set(DATABASE_SETTINGS) - {alias}
    where = f"the database in {name}{sqlite_file(connection)}"
    if _tables_of(other) & present:
        raise UserError(f"{where} holds the {_ROLES[other]} database's tables, not the "
                        f"{_ROLES[alias]} one's: database_url and vault_database_url are "
                        "swapped or name one database; check both ('nccid config show')")
    if missing:
        raise UserError(f"{where} lacks {counted(len(missing), 'table')} of nccid's "
                        f"{_ROLES[alias]} database (e.g. {missing[0]}): check {name} ('nccid "
                        "config show') names this installation's database")


_ROLES = {"default": "main", "vault": "vault"}


def _tables_of(alias: str) -> set[str]:
    """The tables the migrations make in ``alias`` (the router decides which part goes where)."""
    from django.apps import apps
    from django.db import router

    return {model._meta.db_table for model in apps.get_models()
            if model._meta.managed and not model._meta.proxy
            and router.allow_migrate_model(alias, model)}


# A database never set up is a new installation's, or a mistyped setting: init would make
# an empty one beside the installation's data, so the setting is named first.
_NEVER_SET_UP = ("check {name} names this installation's database ('nccid config show'); "
                 "for a new installation, run 'nccid init'")


def _migrations(connection) -> tuple[int, int]:
    """(migrations not applied, migrations applied) of ``connection``."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return len(pending), len(executor.loader.applied_migrations or ())


def _absent_file(connection) -> bool:
    """An SQLite database named by a path in a folder that exists, where no file is (a
    missing folder is told by the connection's error; an in-memory database is never absent)."""
    name = str(connection.settings_dict["NAME"])
    return (connection.vendor == "sqlite" and os.path.isabs(name) and not os.path.exists(name)
            and os.path.isdir(os.path.dirname(name)))


def sqlite_file(connection) -> str:
    """`` (file …)`` for SQLite, where the path is the thing to check; nothing for a server."""
    if connection.vendor == "sqlite":
        return f" (file {connection.settings_dict['NAME']})"
    return ""


def first_line(exc: BaseException) -> str:
    """An exception's first line of text, or its class name when it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_password(password_stdin: bool, prompt: str = "Password") -> str:
    """A new password: typed twice, or one line of standard input."""
    password = _password(password_stdin, prompt, new=True)
    if not password:
        raise UserError("the password is empty")
    return password


def password_to_check(password_stdin: bool, username: str) -> str:
    """An account's password to check: typed once (asked on standard error, so that what
    the command prints stays clean), or one line of standard input."""
    return _password(password_stdin, f"Password for {username}", new=False)


def _password(password_stdin: bool, prompt: str, new: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import typer

    if new:
        return typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return typer.prompt(prompt, hide_input=True, err=True)
