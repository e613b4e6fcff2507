"""Django settings, derived from nccid.config (environment and nccid.toml)."""

from __future__ import annotations

import importlib.util
import os
import secrets
import tempfile
from pathlib import Path

import dj_database_url

from nccid.config import get_settings
from nccid.identity.keys import KeyFileError, load_keyring
from nccid.web.proxy import proxy_settings

# A test session never touches the developer's ./var: it gets a fresh home of its own.
if "PYTEST_VERSION" in os.environ and "NCCID_HOME" not in os.environ:
    os.environ["NCCID_HOME"] = tempfile.mkdtemp(prefix="nccid-test-")
# Tests use synthetic people, whose NHS numbers are from the test range a live site refuses.
if "PYTEST_VERSION" in os.environ:
    os.environ.setdefault("NCCID_ACCEPT_TEST_NUMBERS", "true")

NCCID = get_settings()
BASE_DIR = Path(__file__).resolve().parent.parent


def _secret_key() -> str:
    # Derived from the project key so no second secret has to be kept. Without a key file (a
    # research host, which must not hold it; 'nccid init' before it makes one) a random value
    # of this process alone: such a process signs nothing another one trusts (no sessions, no
    # sign-ins; API tokens and passwords are checked without SECRET_KEY), and a value anyone
    # could work out would let cookies be forged for a portal started without its key.
    try:
        return load_keyring(NCCID.key_file).django_secret()
    except (KeyFileError, OSError):  # OSError: a key file in a folder this account cannot read
        return "nccid-no-key-" + secrets.token_urlsafe(48)


SECRET_KEY = _secret_key()
DEBUG = NCCID.debug
# Hosts, trusted origins and Secure cookies from public_url, the proxy count from
# trusted_proxies (see nccid.web.proxy). Without public_url: any host, plain http.
_REACHED = proxy_settings(NCCID.public_url, NCCID.trusted_proxies)
ALLOWED_HOSTS = _REACHED["ALLOWED_HOSTS"]
CSRF_TRUSTED_ORIGINS = _REACHED["CSRF_TRUSTED_ORIGINS"]
SESSION_COOKIE_SECURE = _REACHED["SESSION_COOKIE_SECURE"]
CSRF_COOKIE_SECURE = _REACHED["CSRF_COOKIE_SECURE"]
NCCID_TRUSTED_PROXIES = _REACHED["NCCID_TRUSTED_PROXIES"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "nccid.accounts",
    "nccid.identity",
    "nccid.clinical",
    "nccid.imaging",
    "nccid.warehouse",
    "nccid.research",
    "nccid.withdrawal",
    "nccid.portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "nccid.web.headers.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "nccid.web.nostore.NoStoreWhenSignedInMiddleware",  # signed-in and API answers: no-store
    "django.contrib.messages.middleware.MessageMiddleware",
    "nccid.portal.session_ended.SessionEndedMiddleware",  # the sign-in page says a session ended
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "nccid.web.unavailable.WarehouseUnavailableMiddleware",
    "nccid.portal.not_allowed.NotAllowedPageMiddleware",  # a portal page for a blank 405
]

ROOT_URLCONF = "nccid.web.urls"
WSGI_APPLICATION = "nccid.web.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]


CONNECT_TIMEOUT = 10  # seconds


def _database(url: str, *, secure_delete: bool = False) -> dict:
    # A connection kept between requests (or a node's batches) is checked before its first
    # use in each: one a server restart ended is replaced, never the cause of an error.
    config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    if config["ENGINE"].endswith("sqlite3"):
        # WAL lets the portal read while the node writes; the timeout waits out short locks.
        # A transaction takes the write lock when it begins (IMMEDIATE): one that read first
        # and wrote after another connection's commit got "database is locked" at once, the
        # timeout never applying (an import's refusal counts lost to its own commit thread).
        # secure_delete overwrites a deleted row's bytes (a withdrawn patient's vault entry).
        pragmas = "PRAGMA journal_mode=WAL;" + (" PRAGMA secure_delete=ON;" if secure_delete else "")
        config["OPTIONS"] = {"timeout": 30, "init_command": pragmas,
                             "transaction_mode": "IMMEDIATE"}
        config["CONN_MAX_AGE"] = 0
        config["CONN_HEALTH_CHECKS"] = False  # nothing kept to check: closed after each use
    else:
        # A server that does not answer fails a connection after this many seconds instead of
        # the operating system's minutes: a site's association waits on it (node.py).
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", CONNECT_TIMEOUT)
    return config


# The key vault is a separate database: identifiers never share a store with the main tables.
DATABASES = {
    "default": _database(NCCID.database_url),
    "vault": _database(NCCID.vault_database_url, secure_delete=True),
}
DATABASE_ROUTERS = ["nccid.identity.routers.VaultRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"

# A session ends 8 hours after signing in, however active the user is (not sliding: saving
# it again keeps the end it was given, nccid.portal.sessions); the sign-in page then says so
# (nccid.portal.session_ended). The cookie itself ends when the browser closes.
SESSION_ENGINE = "nccid.portal.sessions"
SESSION_COOKIE_AGE = 8 * 60 * 60
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True

AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# The client's own address behind the reverse proxy, not the proxy's (shared by everyone).
AXES_CLIENT_IP_CALLABLE = "nccid.web.proxy.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# A failed sign-in's row keeps no typed value (someone may type an NHS or hospital number as
# the username, or follow a link whose query names one): a username that names no account is
# kept as a keyed hash, query and form values are masked (nccid.web.signin_attempts). The
# database handler still: the lock holds across the portal's workers. Rows are deleted after
# the cool-off at the next sign-in.
AXES_HANDLER = "nccid.web.signin_attempts.AttemptHandler"
AXES_USERNAME_CALLABLE = "nccid.web.signin_attempts.attempted_username"
AXES_LOCKOUT_TEMPLATE = "portal/locked.html"  # the portal's page saying when to try again

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "Europe/London"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = NCCID.home / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# Swagger UI for the API reference, from django-ninja's package rather than a CDN. Found
# without importing ninja: as an installed app it would load pydantic into every process
# (the DICOM node and its worker too: 13 MB and 0.15 s each).
STATICFILES_DIRS = [Path(importlib.util.find_spec("ninja").submodule_search_locations[0]) / "static"]

# Form fields (not files) up to this size. Uploaded files stay in memory, never in a temporary
# file: a sheet holds NHS numbers until it is pseudonymised (web/uploads.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
NCCID_MAX_SPREADSHEET_BYTES = 50 * 1024 * 1024
FILE_UPLOAD_HANDLERS = ["nccid.web.uploads.InMemoryOnlyUploadHandler"]

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

NCCID.log_dir.mkdir(parents=True, exist_ok=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Stamped in UTC with a Z (nccid/web/logs.py), as the CLI gives times.
    "formatters": {"plain": {"()": "nccid.web.logs.UTCFormatter",
                             "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # The DICOM libraries quote header values (UIDs, names) in their warnings: their records go
    # through a handler of their own that redacts quoted values, never through the shared one.
    "filters": {"redact_values": {"()": "nccid.imaging.logsafe.RedactValues"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "file": {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": str(NCCID.log_dir / "nccid.log"),
            "formatter": "plain",
            "delay": True,
        },
        "dicom_file": {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": str(NCCID.log_dir / "nccid.log"),
            "formatter": "plain",
            "delay": True,
            "filters": ["redact_values"],
        },
    },
    "loggers": {
        "nccid": {"handlers": ["console", "file"], "level": "INFO", "propagate": False},
        "pynetdicom": {"handlers": ["dicom_file"], "level": "WARNING", "propagate": False},
        "pydicom": {"handlers": ["dicom_file"], "level": "WARNING", "propagate": False},
        "django.request": {"handlers": ["console", "file"], "level": "ERROR", "propagate": False},
    },
}
