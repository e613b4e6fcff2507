"""An upload checked before 'nccid vault rekey' and confirmed after it stores its numbers
under the vault key of the confirmation, and the checked upload keeps no vault ciphertext."""

from __future__ import annotations

import base64

import pytest

from nccid.clinical import services
from nccid.clinical.models import Upload
from nccid.clinical.tests.helpers import PEOPLE, sheet_of
from nccid.identity import service
from nccid.identity.models import VaultEntry

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def checked_upload(site, user, person=PEOPLE[0]):
    data = sheet_of("positive", [{"age": 50, "sex": 1, "crp": 10}], [person])
    upload = services.preview_upload(site, "positive", "s.xlsx", data, user)
    assert upload.status == "preview"
    return upload


def rekey_and_restart(keyring, monkeypatch):
    """What 'nccid vault rekey' does to the vault, then processes started with the new file."""
    new = keyring.with_new_vault_key()
    service.rekey_vault(new)
    monkeypatch.setattr(service, "get_keyring", lambda: new)
    return new


def test_upload_checked_before_a_rekey_and_confirmed_after_is_readable(site, make_user, keyring,
                                                                       monkeypatch):
    uploader, manager = make_user("uploader", site=site), make_user("data-manager")
    upload = checked_upload(site, uploader)
    new = rekey_and_restart(keyring, monkeypatch)

    services.confirm_upload(upload, uploader)

    pseudonym = keyring.pseudonym(PEOPLE[0].nhs_number)
    assert VaultEntry.objects.get(pseudonym=pseudonym).key_fingerprint == new.vault_fingerprint
    assert service.reveal(manager, pseudonym, "safety query SQ-1") == PEOPLE[0].nhs_number
    assert service.rekey_vault(new.with_new_vault_key()) == 1  # later re-keys still work


def test_a_checked_upload_stages_no_vault_ciphertext(site, make_user, keyring):
    upload = checked_upload(site, make_user("uploader", site=site))
    staged = Upload.objects.get(pk=upload.pk).staged
    assert "vault" not in staged
    pseudonym = keyring.pseudonym(PEOPLE[0].nhs_number)
    token = base64.b64decode(staged[services.SEALED][pseudonym])
    with pytest.raises(Exception):  # noqa: B017 - any failure: the vault key cannot read it
        keyring.decrypt(token, pseudonym)
    assert PEOPLE[0].nhs_number not in str(staged)


def test_vault_ciphertext_staged_by_an_older_version_under_a_retired_key_is_refused(
        site, make_user, keyring, monkeypatch):
    uploader = make_user("uploader", site=site)
    upload = checked_upload(site, uploader)
    pseudonym = keyring.pseudonym(PEOPLE[0].nhs_number)
    legacy = {"vault": {pseudonym: base64.b64encode(
        service.encrypt_for_vault(pseudonym, PEOPLE[0].nhs_number)).decode()}}
    staged = {k: v for k, v in upload.staged.items() if k != services.SEALED} | legacy
    Upload.objects.filter(pk=upload.pk).update(staged=staged)
    rekey_and_restart(keyring, monkeypatch)

    with pytest.raises(services.UploadStateError, match="check the spreadsheet again"):
        services.confirm_upload(Upload.objects.get(pk=upload.pk), uploader)

    assert Upload.objects.get(pk=upload.pk).status == "preview"
    assert not VaultEntry.objects.exists()


def test_vault_ciphertext_staged_by_an_older_version_is_stored_when_the_key_is_unchanged(
        site, make_user, keyring):
    uploader, manager = make_user("uploader", site=site), make_user("data-manager")
    upload = checked_upload(site, uploader)
    pseudonym = keyring.pseudonym(PEOPLE[0].nhs_number)
    staged = {k: v for k, v in upload.staged.items() if k != services.SEALED}
    staged["vault"] = {pseudonym: base64.b64encode(
        service.encrypt_for_vault(pseudonym, PEOPLE[0].nhs_number)).decode()}
    Upload.objects.filter(pk=upload.pk).update(staged=staged)

    assert services.confirm_upload(Upload.objects.get(pk=upload.pk), uploader).status == "accepted"
    assert service.reveal(manager, pseudonym, "safety query SQ-2") == PEOPLE[0].nhs_number
