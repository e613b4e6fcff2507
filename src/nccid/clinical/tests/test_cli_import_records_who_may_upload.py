"""``nccid clinical import --user NAME`` took any account's name, unchecked: a researcher or
another site's uploader was recorded as the uploader, and the audit named them with nothing to
say a command line acted. Now the account's password is asked, as the vault's commands do; only
the site's uploaders and administrators (who may upload for it on the portal) are accepted; the
audit names the account and the operating-system user (``rita (cli:NAME)``), and a refusal is
audited too. Without --user the operating-system user is recorded (``cli:NAME``), not 'cli'."""

from __future__ import annotations

import pytest
from conftest import TEST_PASSWORD

from nccid.accounts.models import AuditEvent
from nccid.accounts.signals import current_actor
from nccid.cli.tests.clirun import run_cli
from nccid.clinical.models import Upload
from nccid.synthetic.people import people

from .helpers import sheet_of

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PERSON = people(1, seed=57, site_prefix="RTEST")[0]


@pytest.fixture
def sheet(tmp_path, site, local_warehouse, keyring):
    path = tmp_path / "positive.xlsx"
    path.write_bytes(sheet_of("positive", [{"age": 63}], [PERSON]))
    return path


def import_as(monkeypatch, sheet, *user: str, password: str = TEST_PASSWORD):
    return run_cli(monkeypatch, "clinical", "import", str(sheet), "--site", "RTEST", "--kind",
                   "positive", *user, "--password-stdin", stdin=password + "\n")


def uploaders() -> list[str]:
    return list(AuditEvent.objects.filter(action__startswith="clinical.upload.")
                .order_by("id").values_list("username", flat=True))


@pytest.mark.parametrize("role, at_site", [("researcher", True), ("data-manager", False),
                                           ("uploader", False)])
def test_an_account_that_could_not_upload_for_the_site_is_refused(
        monkeypatch, sheet, site, other_site, make_user, role, at_site):
    account = make_user(role, site=site if at_site else other_site)
    result = import_as(monkeypatch, sheet, "--user", account.username)
    assert result.code == 1 and "only RTEST's uploaders and administrators" in result.err_text
    assert not Upload.objects.exists() and uploaders() == []
    [denied] = AuditEvent.objects.filter(action="clinical.import.denied")
    assert denied.username == f"{account.username} ({current_actor()})"
    assert denied.detail["site"] == "RTEST"


def test_a_wrong_password_or_an_unknown_name_is_refused(monkeypatch, sheet, site, make_user):
    uploader = make_user("uploader", site=site)
    assert import_as(monkeypatch, sheet, "--user", uploader.username, password="guess").code == 1
    assert import_as(monkeypatch, sheet, "--user", "9990000018").code == 1
    assert not Upload.objects.exists()
    assert list(AuditEvent.objects.filter(action="clinical.import.denied").order_by("id")
                .values_list("username", flat=True)) == [
        f"{uploader.username} ({current_actor()})", f"(unknown user) ({current_actor()})"]


@pytest.mark.parametrize("role", ["uploader", "admin"])
def test_the_sites_uploader_or_an_administrator_is_recorded_with_the_os_user(
        monkeypatch, sheet, site, make_user, role):
    account = make_user(role, site=site if role == "uploader" else None)
    result = import_as(monkeypatch, sheet, "--user", account.username)
    assert result.code == 0, result.err
    upload = Upload.objects.get()
    assert (upload.uploaded_by, upload.uploaded_by_name) == (account, account.username)
    marked = f"{account.username} ({current_actor()})"
    assert uploaders() == [marked, marked]  # preview and confirm


def test_without_an_account_the_os_user_is_recorded(monkeypatch, sheet):
    result = run_cli(monkeypatch, "clinical", "import", str(sheet), "--site", "RTEST",
                     "--kind", "positive")
    assert result.code == 0, result.err
    assert current_actor().startswith("cli:") and uploaders() == [current_actor()] * 2
    assert Upload.objects.get().uploaded_by_name == current_actor()
