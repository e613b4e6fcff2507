"""Effective settings: environment variables over an optional ``nccid.toml`` over defaults.

Pure Python: no Django import here, so the CLI and the pure libraries can read settings too.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
    # The node acknowledges from an encrypted, durable spool; a drain thread stores from it.
    spool_dir: Path = Path("var/spool")
    spool_segment_bytes: int = 256 * 1024 * 1024
    node_drain: bool = True  # false: the node only spools (an operator's pause switch)
    node_worker_process: bool = True  # `nccid node` de-identifies in a child process
    portal_host: str = "127.0.0.1"
    portal_port: int = 8000
    # The https origin users reach behind the reverse proxy (empty: the portal is reached
    # directly, as by `make run`); and how many proxies stand in front of it.
    public_url: str = ""
    trusted_proxies: int = 0
    deid_profile: str = "retain-dates"
    validation_percent: int = 20
    pending_retention_days: int = 90
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
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _read_toml(home: Path) -> dict:
    if os.environ.get("NCCID_CONFIG"):
        path = Path(os.environ["NCCID_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"NCCID_CONFIG names {path}, which is not a file")
    path = Path(os.environ.get("NCCID_CONFIG") or home / "nccid.toml")
    if not path.exists():
        local = Path("nccid.toml")
        path = local if local.exists() and "NCCID_CONFIG" not in os.environ else path
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _int(name: str, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from exc


def _positive(name: str, value) -> int:
    number = _int(name, value)
    if number <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {number}")
    return number


def _public_url(value) -> str:
    """An origin (scheme and host, optional port, nothing after): what browsers send as Origin."""
    text = str(value).strip().rstrip("/")
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


def _not_negative(name: str, value) -> int:
    number = _int(name, value)
    if number < 0:
        raise ConfigError(f"{name} must be 0 or more, got {number}")
    return number


def _flag(name: str, value) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The effective settings. ``NCCID_HOME`` (default ``./var``) anchors every default path."""
    home = Path(os.environ.get("NCCID_HOME", "var")).resolve()
    file_cfg = _read_toml(home)

    def pick(key: str, default):
        # The NCCID_ name wins: a machine may hold a DATABASE_URL meant for another program.
        env = os.environ.get("NCCID_" + key.upper()) or os.environ.get(key.upper())
        return env if env else file_cfg.get(key, default)  # an empty variable is unset

    storage_options = dict(file_cfg.get("storage_options", {}))
    if os.environ.get("NCCID_S3_ENDPOINT"):
        storage_options["endpoint_url"] = os.environ["NCCID_S3_ENDPOINT"]

    profile = pick("deid_profile", "retain-dates")
    if profile not in DEID_PROFILES:
        raise ConfigError(f"deid_profile must be one of {', '.join(DEID_PROFILES)}, got {profile!r}")
    percent = _int("validation_percent", pick("validation_percent", 20))
    if not 0 <= percent <= 100:
        raise ConfigError(f"validation_percent must be between 0 and 100, got {percent}")

    return Settings(
        home=home,
        database_url=pick("database_url", f"sqlite:///{home / 'nccid.sqlite3'}"),
        vault_database_url=pick("vault_database_url", f"sqlite:///{home / 'vault.sqlite3'}"),
        storage_url=pick("storage_url", str(home / "warehouse")),
        storage_options=storage_options,
        key_file=Path(pick("key_file", home / "secret.key")),
        log_dir=Path(pick("log_dir", home / "logs")),
        pending_dir=Path(pick("pending_dir", home / "pending")),
        node_ae_title=pick("node_ae_title", "NCCID"),
        node_host=pick("node_host", "127.0.0.1"),
        node_port=_int("node_port", pick("node_port", 11112)),
        spool_dir=Path(pick("spool_dir", home / "spool")),
        spool_segment_bytes=_positive("spool_segment_bytes",
                                      pick("spool_segment_bytes", 256 * 1024 * 1024)),
        node_drain=_flag("node_drain", pick("node_drain", "true")),
        node_worker_process=_flag("node_worker_process", pick("node_worker_process", "true")),
        portal_host=pick("portal_host", "127.0.0.1"),
        portal_port=_int("portal_port", pick("portal_port", 8000)),
        public_url=_public_url(pick("public_url", "")),
        trusted_proxies=_not_negative("trusted_proxies", pick("trusted_proxies", 0)),
        deid_profile=profile,
        validation_percent=percent,
        pending_retention_days=_int("pending_retention_days", pick("pending_retention_days", 90)),
        debug=str(pick("debug", "")).lower() in ("1", "true", "yes"),
    )


def reset_settings_cache() -> None:
    """Forget cached settings (tests change NCCID_HOME between cases)."""
    get_settings.cache_clear()
