"""Fixtures shared by every part's tests. Each test session runs in its own NCCID_HOME
(see nccid.web.settings), with a fresh key file, and only synthetic people."""

from __future__ import annotations

import pytest

from nccid.config import get_settings, reset_settings_cache

BOTH_DATABASES = ["default", "vault"]


@pytest.fixture(scope="session", autouse=True)
def nccid_key_file():
    """A key file for the session's NCCID_HOME (created once, like 'nccid init')."""
    from nccid.identity.keys import create_key_file
    from nccid.identity.service import reset_keyring_cache

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    if not settings.key_file.exists():
        create_key_file(settings.key_file)
    reset_keyring_cache()
    return settings.key_file


@pytest.fixture(autouse=True)
def no_withdrawal_marker_outlives_its_test():
    """A withdrawal's marker in the session's shared warehouse would refuse the same synthetic
    person in every later test (intake reads the markers, not only the database, which each
    test rolls back)."""
    import shutil

    from nccid.warehouse.layout import WITHDRAWN_PREFIX

    # The session's home, read before the test: read after it, a test's own home (nccid_home,
    # whose environment is undone after this runs) would be cached as every later test's.
    home = get_settings().home
    yield
    shutil.rmtree(home / "warehouse" / WITHDRAWN_PREFIX, ignore_errors=True)


@pytest.fixture
def keyring(nccid_key_file):
    from nccid.identity.service import get_keyring

    return get_keyring()


@pytest.fixture
def site(db):
    from nccid.accounts.models import Site

    return Site.objects.create(code="RTEST", name="Royal Test Infirmary", ae_title="RTEST_PACS")


@pytest.fixture
def other_site(db):
    from nccid.accounts.models import Site

    return Site.objects.create(code="OTHER", name="Other Test Hospital", ae_title="OTHER_PACS")


TEST_PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture
def make_user(db):
    """make_user(role, site=None, username=None, research_sets=None) -> a saved user with
    TEST_PASSWORD. A researcher or administrator is granted the training set unless
    ``research_sets`` says otherwise ([] for none)."""
    from nccid.accounts.models import User
    from nccid.accounts.signals import audited_by_caller

    counter = iter(range(1_000_000))

    def make(role: str, site=None, username: str | None = None,
             research_sets: list[str] | None = None):
        name = username or f"{role.replace('-', '')}{next(counter)}"
        if research_sets is None:
            research_sets = ["training"] if role in ("researcher", "admin") else []
        user = User(username=name, role=role, site=site, research_sets=research_sets,
                    is_staff=role in ("data-manager", "admin"), is_superuser=role == "admin")
        user.set_password(TEST_PASSWORD)
        with audited_by_caller():  # a test's setting up, not an account.add to check
            user.save()
        return user

    return make


@pytest.fixture
def nccid_home(tmp_path, monkeypatch):
    """A fresh, initialised-on-demand NCCID_HOME for CLI or subprocess end-to-end tests.

    In-process code keeps the session's settings; subprocesses inherit this environment.
    """
    home = tmp_path / "home"
    monkeypatch.setenv("NCCID_HOME", str(home))
    for name in ("DATABASE_URL", "VAULT_DATABASE_URL", "STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield home
    reset_settings_cache()


@pytest.fixture
def accept_test_numbers(monkeypatch):
    """``accept_test_numbers("false")`` sets the setting as a live installation has it (the test
    session accepts NHS test numbers, as its synthetic people have them)."""
    def setting(value: str) -> None:
        monkeypatch.setenv("NCCID_ACCEPT_TEST_NUMBERS", value)
        reset_settings_cache()

    yield setting
    monkeypatch.undo()
    reset_settings_cache()


def pytest_collection_modifyitems(items):
    """Tests that touch the database carry the django_db mark, so the PostgreSQL run selects them."""
    for item in items:
        if {"db", "transactional_db", "django_db_setup"} & set(getattr(item, "fixturenames", ())):
            if item.get_closest_marker("django_db") is None:
                item.add_marker(pytest.mark.django_db)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (SeaweedFS) for the session: ``endpoint_url``, ``access_key``,
    ``secret_key``, ``options`` (warehouse storage options), ``env`` and ``make_bucket()``."""
    from nccid.warehouse.testing import running_s3_server

    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def _fresh_warehouse(monkeypatch, url: str, env: dict | None = None):
    """Point the installation's warehouse at ``url`` (for this test) and create it."""
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STORAGE_URL", url)
    reset_settings_cache()
    from nccid.warehouse.service import get_warehouse

    warehouse = get_warehouse()
    warehouse.ensure()
    return warehouse


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request, tmp_path, monkeypatch):
    """The installation's warehouse on a fresh local folder, then on a fresh bucket of real S3."""
    if request.param == "local":
        yield _fresh_warehouse(monkeypatch, str(tmp_path / "warehouse"))
    else:
        server = request.getfixturevalue("s3_server")
        yield _fresh_warehouse(monkeypatch, f"s3://{server.make_bucket('wh')}/nccid", server.env)
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def local_warehouse(tmp_path, monkeypatch):
    """The installation's warehouse on a fresh local folder only."""
    yield _fresh_warehouse(monkeypatch, str(tmp_path / "warehouse"))
    monkeypatch.undo()
    reset_settings_cache()
