"""A re-key keeps the old key file as ``secret.key.retired-<UTC time to the second>``: a second
re-key within the same second found that name taken and failed after its transaction had
committed (the vault under the new vault key, the key file not). A name taken now gets a
number (``…Z-02``, ``…Z-03``) that sorts after it and before the next second's; a retired
file is never overwritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nccid.identity.keys import (
    create_key_file,
    load_keyring,
    remove_key_temporaries,
    retire_key_file,
)
from nccid.identity.tests.test_a_rekey_retires_the_old_vault_key import populate, rekey

NOON = datetime(2026, 11, 25, 12, 0, 0, 250_000, tzinfo=UTC)


def replace_key(key_file) -> str:
    """A new key file in place of the current one (as a re-key leaves it); its text."""
    key_file.unlink(missing_ok=True)
    create_key_file(key_file)
    return key_file.read_text()


def test_key_files_retired_in_one_second_each_get_a_name_of_their_own(tmp_path):
    key_file = tmp_path / "secret.key"
    kept = {}
    for moment in (NOON, NOON + timedelta(microseconds=500_000), NOON):
        text = replace_key(key_file)
        kept[retire_key_file(key_file, moment)] = text

    assert [path.name for path in kept] == ["secret.key.retired-20261125T120000Z",
                                            "secret.key.retired-20261125T120000Z-02",
                                            "secret.key.retired-20261125T120000Z-03"]
    assert all(path.read_text() == text for path, text in kept.items())  # none overwritten
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in kept)

    later = retire_key_file(key_file, NOON + timedelta(seconds=1))
    assert sorted([later, *kept]) == [*kept, later]  # in the order they were retired
    assert remove_key_temporaries(key_file) == []  # retired files are not temporaries


def test_two_rekeys_in_a_row_both_keep_the_key_file_they_replace(home, tmp_path):
    env = populate(home, tmp_path)
    original = (home / "secret.key").read_text()

    first = rekey(env)
    assert first.code == 0, first.err
    after_first = (home / "secret.key").read_text()
    second = rekey(env)
    assert second.code == 0, second.err

    retired = sorted(home.glob("secret.key.retired-*"))
    assert [path.read_text() for path in retired] == [original, after_first]
    assert all(f"the previous file is {path}" in " ".join(run.out.split())
               for path, run in zip(retired, (first, second), strict=True))
    assert load_keyring(home / "secret.key").vault_fingerprint not in {
        load_keyring(path, copy=True).vault_fingerprint for path in retired}
