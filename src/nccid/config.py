"""Effective settings: environment variables over an optional ``nccid.toml`` over defaults.

Pure Python: no Django import here, so the CLI and the pure libraries can read settings too.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

DEID_PROFILES = ("retain-dates", "shift-dates")


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    vault_database_url: str
    storage_url: str
    storage_options: dict = field(default_factory=dict)
    key_file: Path = Path("var/secret.key")
    log_dir: Path = Path("var/logs")
    pending_dir: Path = Path("var/pending")
    node_ae_title: str = "NCCID"
    node_host: str = "127.0.0.1"
    node_port: int = 11112
    # The host name sites send to, shown on the guidance page (node_host is where the node
    # listens, often 0.0.0.0). Empty: see nccid.portal.content.node_public_host.
    node_public_host: str = ""
    # The node acknowledges from an encrypted, durable spool; a drain thread stores from it.
    spool_dir: Path = Path("var/spool")
    spool_segment_bytes: int = 256 * 1024 * 1024
    node_drain: bool = True  # false: the node only spools (an operator's pause switch)
    node_worker_process: bool = True  # `nccid node` de-identifies in a child process
    # Memory the node's associations may hold in instances being received, in all (an
    # association past it waits; the one that began first never does: fastpath.MemoryBudget).
    node_receive_memory_mb: int = 128
    # Associations one calling AE title, and one address, may hold at once (of the 32): AE
    # titles are no secret, and one peer could otherwise hold every slot and turn sites away.
    node_associations_per_ae_title: int = 8
    node_associations_per_address: int = 16
    portal_host: str = "127.0.0.1"
    portal_port: int = 8000
    # The https origin users reach behind the reverse proxy (empty: the portal is reached
    # directly, as by `make run`); and how many proxies stand in front of it.
    public_url: str = ""
    trusted_proxies: int = 0
    deid_profile: str = "retain-dates"
    validation_percent: int = 20
    pending_retention_days: int = 90
    # A checked sheet never confirmed nor cancelled is cancelled after this (its staged rows
    # and sealed NHS/CHI numbers would otherwise stay in the main database for good).
    check_retention_days: int = 14
    # NHS test-range numbers (999…) are test data: a live installation refuses them.
    accept_test_numbers: bool = False
    # A research query (cohort count, list, export table) is stopped past these: one
    # request must not hold a portal worker, or the machine's memory, for as long as it likes.
    research_query_seconds: int = 60
    research_query_memory_mb: int = 2048
    debug: bool = False

    def masked(self) -> dict:
        """Settings as a dict with passwords and secret values hidden, for display."""
        shown = {}
        for name, value in asdict(self).items():
            if isinstance(value, Path):
                value = str(value)
            if name.endswith("_url") and isinstance(value, str):
                value = mask_url_password(value)
            if name == "storage_options":
                value = _mask_options(value)
            shown[name] = value
        return shown


_SECRET_WORDS = ("secret", "key", "token", "password", "credential")


def _mask_options(options: dict) -> dict:
    """Storage options with every credential-like value (at any depth) replaced by ****."""
    shown = {}
    for k, v in options.items():
        if isinstance(v, dict):
            shown[k] = _mask_options(v)
        elif any(word in str(k).lower() for word in _SECRET_WORDS):
            shown[k] = "****"
        else:
            shown[k] = mask_url_password(v) if isinstance(v, str) and "://" in v else v
    return shown


def mask_url_password(url: str) -> str:
    """``url`` with its password, and any credential-like query parameter
    (``?password=``, ``sslpassword=``, ``secret=``...), shown as ``****``; the rest as written.
    The password runs from the first ``:`` of the user part to the last ``@``, so one written
    without percent-encoding (``pa/ss``, ``p@ss#1?``) is masked whole: urlsplit would end the
    host at its ``/``, ``#`` or ``?`` and show the rest. (Not rebuilt with urlunsplit, which
    drops an empty host: ``sqlite:////abs`` read ``sqlite://abs``.)"""
    scheme, slashes, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    shown = f"{scheme}://{user}:****@{after}" if slashes and at and colon else url
    query = urlsplit(shown).query
    if query:  # the query follows the first ? after the masked password
        shown = shown.replace(f"?{query}", f"?{_mask_query(query)}", 1)
    return shown


def _mask_query(query: str) -> str:
    """Each ``name=value`` pair kept as written, the value masked when the name looks secret."""
    pairs = []
    for pair in query.split("&"):
        name, sep, _ = pair.partition("=")
        secret = sep and any(word in name.lower() for word in _SECRET_WORDS)
        pairs.append(f"{name}=****" if secret else pair)
    return "&".join(pairs)


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


LOCAL_CONFIG = Path("nccid.toml")
HOME_IN_HOME = ("{path}: 'home' cannot be set in the nccid.toml inside the data directory (that "
                "file is found through the home, so it cannot move it): set NCCID_HOME, or put "
                "'home' in a nccid.toml named by NCCID_CONFIG or in the working folder")


def _home_and_config() -> tuple[Path, Path | None, dict]:
    """The data directory, the TOML file to read and its contents. The file is
    ``$NCCID_CONFIG`` (must exist), else ``./nccid.toml`` if it sets ``home``, else the one in
    the home, else ``./nccid.toml``. The home is ``$NCCID_HOME``, else the file's ``home`` (not
    the home's own file: it is found through the home), else ``./var``. An empty variable
    counts as unset, like every other."""
    named = os.environ.get("NCCID_CONFIG")
    if named:
        if not Path(named).is_file():
            raise ConfigError(f"NCCID_CONFIG names {named}, which is not a file")
        path = Path(named)
        cfg = _read_toml(path)
        return _home(cfg, path), path, cfg
    if not os.environ.get("NCCID_HOME") and LOCAL_CONFIG.exists():
        cfg = _read_toml(LOCAL_CONFIG)
        if "home" in cfg:
            home = _home(cfg, LOCAL_CONFIG)
            _refuse_a_second_file(home / "nccid.toml", LOCAL_CONFIG)
            return home, LOCAL_CONFIG, cfg
    home = _home({}, None)
    for path in (home / "nccid.toml", LOCAL_CONFIG):
        if path.exists():
            cfg = _read_toml(path)
            if "home" in cfg and path == home / "nccid.toml":
                raise ConfigError(HOME_IN_HOME.format(path=path))
            return home, path, cfg
    return home, None, {}


def _home(cfg: dict, path: Path | None) -> Path:
    """``$NCCID_HOME``, else the file's ``home`` (relative to the file's folder), else ./var."""
    if os.environ.get("NCCID_HOME"):
        return Path(os.environ["NCCID_HOME"]).resolve()
    value = cfg.get("home", "var")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"home must be a path (a string), got {value!r} (in {path})")
    home = Path(value).expanduser()
    return (home if path is None else path.parent / home).resolve()


def _refuse_a_second_file(in_home: Path, named_it: Path) -> None:
    """The file that names the home is the one read: another in that home would be ignored."""
    if in_home.exists() and not in_home.samefile(named_it):
        raise ConfigError(f"{named_it} sets home to {in_home.parent}, which holds a nccid.toml of "
                          f"its own that would be ignored: keep the settings in one of the two "
                          f"files")


def _read_toml(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text: byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


# A DICOM AE title: 1-16 characters of the default repertoire, no backslash or control
# character (leading and trailing spaces are not significant, so they are dropped).
_AE_TITLE = re.compile(r"[ -\[\]-~]{1,16}")


class _Picker:
    """Raw values, environment over TOML over default, each with where it came from, so an
    error names the variable or the file to fix."""

    def __init__(self, file_cfg: dict, path: Path | None):
        self.file_cfg, self.path = file_cfg, path
        self.known: set[str] = set()  # every key asked for: the file may hold these only

    def raw(self, key: str, default) -> tuple[object, str]:
        self.known.add(key)
        # The NCCID_ name wins: a machine may hold a DATABASE_URL meant for another program.
        for name in ("NCCID_" + key.upper(), key.upper()):
            if os.environ.get(name):  # an empty variable is unset
                return os.environ[name], f"from {name}"
        if key in self.file_cfg:
            return self.file_cfg[key], f"in {self.path}"
        return default, "the default"

    def text(self, key: str, default: str) -> str:
        value, where = self.raw(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r} ({where})")
        return value

    def path_(self, key: str, default: Path) -> Path:
        value, where = self.raw(key, default)
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{key} must be a path (a string), got {value!r} ({where})")
        return Path(value)

    def whole(self, key: str, default: int, low: int | None = None, high: int | None = None) -> int:
        value, where = self.raw(key, default)
        number = _whole_number(value)
        if number is None:
            raise ConfigError(f"{key} must be a whole number, got {value!r} ({where})")
        if low is not None and high is not None and not low <= number <= high:
            raise ConfigError(f"{key} must be between {low} and {high}, got {number} ({where})")
        if low is not None and number < low:
            raise ConfigError(f"{key} must be {low} or more, got {number} ({where})")
        return number

    def flag(self, key: str, default: bool, others_may_set_plain: bool = False) -> bool:
        """``others_may_set_plain``: the plain variable (``DEBUG``) is one other programs set
        to their own values (``DEBUG=*``): such a value there counts as unset (the file, then
        the default, decide), not an error."""
        value, where = self.raw(key, default)
        if others_may_set_plain and where == f"from {key.upper()}" and _truth(value) is None:
            value, where = self.file_cfg.get(key, default), f"in {self.path}"
        truth = _truth(value)
        if truth is None:
            raise ConfigError(f"{key} must be true or false, got {value!r} ({where})")
        return truth

    def table(self, key: str) -> dict:
        self.known.add(key)
        value = self.file_cfg.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table ([{key}]), got {value!r} (in {self.path})")
        return dict(value)

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value, where = self.raw(key, default)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r} ({where})")
        return value

    def ae_title(self, key: str, default: str) -> str:
        value = self.text(key, default).strip()
        if not _AE_TITLE.fullmatch(value):
            _, where = self.raw(key, default)
            raise ConfigError(f"{key} must be 1 to 16 characters (letters, digits, spaces and "
                              f"punctuation other than a backslash), got {value!r} ({where})")
        return value

    def refuse_unknown_keys(self) -> None:
        """A key no setting reads is a typo (``databse_url``): refused, else the installation
        would run silently on the default (local SQLite, a new key file...)."""
        unknown = [key for key in self.file_cfg if key not in self.known]
        if unknown:
            raise ConfigError(f"{self.path}: " + "; ".join(map(self._unknown, unknown)))

    def _unknown(self, key: str) -> str:
        near = difflib.get_close_matches(key, sorted(self.known), n=1)
        hint = f"did you mean {near[0]!r}?" if near else "the settings are listed in docs/configuration.md"
        return f"unknown setting {key!r} ({hint})"

    def public_url(self, key: str) -> str:
        value, where = self.raw(key, "")
        try:
            return _public_url(value)
        except ConfigError as exc:
            raise ConfigError(f"{exc} ({where})") from None


def _whole_number(value) -> int | None:
    """An int, or a string of one; never a bool or a float (TOML ``11112.5`` is not cut)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _public_url(value) -> str:
    """An origin (scheme and host, optional port, nothing after): what browsers send as Origin."""
    if not isinstance(value, str):
        raise ConfigError(f"public_url must be a string, got {value!r}")
    text = value.strip().rstrip("/")
    if not text:
        return ""
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise ConfigError(f"public_url has a malformed port: {value!r}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query \
            or parts.fragment or parts.username:
        raise ConfigError("public_url must be an origin such as https://nccid.example.nhs.uk "
                          f"(scheme and host, no path), got {value!r}")
    return text


PORTS = (1, 65535)


def _truth(value: object) -> bool | None:
    """True or False for the words of a switch (TOML's booleans included), else None."""
    text = str(value).strip().lower()
    return True if text in ("1", "true", "yes", "on") else (
        False if text in ("0", "false", "no", "off") else None)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The effective settings. The home (``NCCID_HOME``, else a ``home`` in the file, default
    ``./var``) anchors every default path."""
    home, path, cfg = _home_and_config()
    pick = _Picker(cfg, path)
    pick.known.add("home")  # read above: NCCID_HOME, else the file (HOME is the user's own)

    storage_options = pick.table("storage_options")
    if os.environ.get("NCCID_S3_ENDPOINT"):
        storage_options["endpoint_url"] = os.environ["NCCID_S3_ENDPOINT"]

    settings = Settings(
        home=home,
        database_url=pick.text("database_url", f"sqlite:///{home / 'nccid.sqlite3'}"),
        vault_database_url=pick.text("vault_database_url", f"sqlite:///{home / 'vault.sqlite3'}"),
        storage_url=pick.text("storage_url", str(home / "warehouse")),
        storage_options=storage_options,
        key_file=pick.path_("key_file", home / "secret.key"),
        log_dir=pick.path_("log_dir", home / "logs"),
        pending_dir=pick.path_("pending_dir", home / "pending"),
        node_ae_title=pick.ae_title("node_ae_title", "NCCID"),
        node_host=pick.text("node_host", "127.0.0.1"),
        node_port=pick.whole("node_port", 11112, *PORTS),
        node_public_host=pick.text("node_public_host", "").strip(),
        spool_dir=pick.path_("spool_dir", home / "spool"),
        spool_segment_bytes=pick.whole("spool_segment_bytes", 256 * 1024 * 1024, low=1),
        node_drain=pick.flag("node_drain", True),
        node_worker_process=pick.flag("node_worker_process", True),
        node_receive_memory_mb=pick.whole("node_receive_memory_mb", 128, low=16),
        node_associations_per_ae_title=pick.whole("node_associations_per_ae_title", 8, low=1),
        node_associations_per_address=pick.whole("node_associations_per_address", 16, low=1),
        portal_host=pick.text("portal_host", "127.0.0.1"),
        portal_port=pick.whole("portal_port", 8000, *PORTS),
        public_url=pick.public_url("public_url"),
        trusted_proxies=pick.whole("trusted_proxies", 0, low=0),
        deid_profile=pick.choice("deid_profile", "retain-dates", DEID_PROFILES),
        validation_percent=pick.whole("validation_percent", 20, 0, 100),
        # At least a day: 0 or less would expire every waiting image the moment it arrives.
        pending_retention_days=pick.whole("pending_retention_days", 90, low=1),
        # At least a day: a site checks a sheet, then confirms it, often not at once.
        check_retention_days=pick.whole("check_retention_days", 14, low=1),
        accept_test_numbers=pick.flag("accept_test_numbers", False),
        # Under the reverse proxy's timeout (120 s, docs/portal.md; gunicorn's gthread workers do not
        # end long requests); at least 64 MB, DuckDB's working minimum.
        research_query_seconds=pick.whole("research_query_seconds", 60, 1, 3600),
        research_query_memory_mb=pick.whole("research_query_memory_mb", 2048, low=64),
        debug=pick.flag("debug", False, others_may_set_plain=True),
    )
    pick.refuse_unknown_keys()  # after every setting was read: each one read is known
    return settings


def setting_origin(key: str) -> str:
    """Where the effective value of ``key`` comes from (``from NCCID_DEID_PROFILE``, ``in
    /srv/nccid/nccid.toml``, ``the default``), for a message that asks to change it."""
    _, path, cfg = _home_and_config()
    return _Picker(cfg, path).raw(key, None)[1]


def reset_settings_cache() -> None:
    """Forget cached settings (tests change NCCID_HOME between cases)."""
    get_settings.cache_clear()
