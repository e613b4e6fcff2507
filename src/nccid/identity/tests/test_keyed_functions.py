"""The keyring: pseudonym format and stability, site-scoped hospital hashes, keyed UIDs,
split fraction, date shift, the vault cipher and the key file itself."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st

from nccid.identity.keys import (
    PSEUDONYM_PATTERN,
    SHIFT_BACKWARD,
    SHIFT_BOTH_WAYS,
    KeyFileError,
    Keyring,
    create_key_file,
    load_keyring,
)
from nccid.synthetic.people import nhs_test_numbers

DICOM_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
KEY_A = Keyring(bytes(range(32)))
KEY_B = Keyring(bytes(range(1, 33)))


def test_pseudonym_is_nccid_and_16_base32_characters():
    for number in nhs_test_numbers(50):
        pseudonym = KEY_A.pseudonym(number)
        assert PSEUDONYM_PATTERN.fullmatch(pseudonym), pseudonym
        assert number not in pseudonym


def test_pseudonym_is_a_function_of_key_and_number_only():
    numbers = nhs_test_numbers(200)
    first = [KEY_A.pseudonym(n) for n in numbers]
    again = [Keyring(bytes(range(32))).pseudonym(n) for n in numbers]  # a fresh run, same key
    other = [KEY_B.pseudonym(n) for n in numbers]
    assert first == again
    assert len(set(first)) == 200
    assert not set(first) & set(other)


def test_pseudonym_refuses_an_unnormalised_number():
    with pytest.raises(ValueError, match="normalised"):
        KEY_A.pseudonym("999 000 0018")


def test_hospital_hash_is_scoped_to_its_site_and_folds_case_and_spaces():
    here = KEY_A.hospital_hash("RTEST", "rx01 000123")
    assert here == KEY_A.hospital_hash("rtest", "RX01000123")
    assert here != KEY_A.hospital_hash("OTHER", "RX01000123")
    assert here != KEY_B.hospital_hash("RTEST", "RX01000123")
    assert re.fullmatch(r"H-[A-Z2-7]{16}", here)
    assert "000123" not in here


def test_blank_hospital_number_is_refused_rather_than_linking_everyone():
    with pytest.raises(ValueError, match="empty"):
        KEY_A.hospital_hash("RTEST", "  ")


@settings(max_examples=200)
@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=12))
def test_property_keyed_uid_is_a_valid_dicom_uid_of_at_most_64_characters(components):
    original = ".".join(str(c) for c in components)
    replacement = KEY_A.uid(original)
    assert len(replacement) <= 64
    assert DICOM_UID.match(replacement)
    assert replacement.startswith("2.25.")
    assert replacement == KEY_A.uid(original + "\x00")  # DICOM pads odd-length UIDs
    assert replacement != KEY_B.uid(original)


def test_split_fraction_is_stable_and_spread_evenly():
    pseudonyms = [KEY_A.pseudonym(n) for n in nhs_test_numbers(4000)]
    fractions = [KEY_A.split_fraction(p) for p in pseudonyms]
    assert all(0 <= f < 1 for f in fractions)
    assert fractions == [KEY_A.split_fraction(p) for p in pseudonyms]
    share = sum(f < 0.2 for f in fractions) / len(fractions)
    assert 0.17 < share < 0.23  # 20% target; > 4 standard deviations of slack


def test_date_shift_goes_backward_only_never_zero_and_within_the_bound():
    """A shifted date is never after the real one, so a recent study is never shifted into the
    future (where its distance from today would bound the offset)."""
    pseudonyms = [KEY_A.pseudonym(n) for n in nhs_test_numbers(3000)]
    shifts = [KEY_A.date_shift_days(p) for p in pseudonyms]
    assert all(-365 <= s <= -1 for s in shifts)
    assert min(shifts) < -300 and max(shifts) > -65  # the whole range is used
    assert shifts == [KEY_A.date_shift_days(p, scheme=SHIFT_BACKWARD) for p in pseudonyms]
    assert all(-7 <= KEY_A.date_shift_days(p, max_days=7) <= -1 for p in pseudonyms)


def test_an_installation_shifting_both_ways_keeps_its_patients_offsets():
    """Offsets of an installation that shifted dates before backward only: those of the
    release before (pinned), so its patients' new files and clinical dates still agree."""
    pseudonyms = [KEY_A.pseudonym(n) for n in ("9990000018", "9990000026", "9990000034",
                                               "9990000042", "9990000050", "9990000069")]
    assert [KEY_A.date_shift_days(p, scheme=SHIFT_BOTH_WAYS) for p in pseudonyms] == [
        259, -143, 192, -301, -37, 145]
    many = [KEY_A.date_shift_days(KEY_A.pseudonym(n), scheme=SHIFT_BOTH_WAYS)
            for n in nhs_test_numbers(3000)]
    assert all(1 <= abs(s) <= 365 for s in many) and min(many) < -300 and max(many) > 300
    with pytest.raises(ValueError, match="scheme"):
        KEY_A.date_shift_days(pseudonyms[0], scheme="forward")


def test_vault_cipher_binds_the_pseudonym_and_the_key():
    token = KEY_A.encrypt(b"9990000018", "NCCID-AAAAAAAAAAAAAAAA")
    assert b"9990000018" not in token
    assert KEY_A.decrypt(token, "NCCID-AAAAAAAAAAAAAAAA") == b"9990000018"
    assert token != KEY_A.encrypt(b"9990000018", "NCCID-AAAAAAAAAAAAAAAA")  # fresh nonce
    with pytest.raises(InvalidTag):
        KEY_A.decrypt(token, "NCCID-BBBBBBBBBBBBBBBB")  # moved to another pseudonym
    with pytest.raises(InvalidTag):
        KEY_B.decrypt(token, "NCCID-AAAAAAAAAAAAAAAA")


def test_new_vault_key_keeps_every_pseudonym_key():
    rekeyed = KEY_A.with_new_vault_key()
    assert rekeyed.fingerprint == KEY_A.fingerprint
    assert rekeyed.vault_fingerprint != KEY_A.vault_fingerprint
    assert rekeyed.pseudonym("9990000018") == KEY_A.pseudonym("9990000018")
    assert rekeyed.uid("1.2.3") == KEY_A.uid("1.2.3")
    with pytest.raises(InvalidTag):
        rekeyed.decrypt(KEY_A.encrypt(b"x", "c"), "c")


def test_keyring_repr_never_shows_key_material():
    assert "master" not in repr(KEY_A) and str(bytes(range(32))) not in repr(KEY_A)


def test_key_file_is_private_and_never_replaced(tmp_path):
    path = tmp_path / "keys" / "secret.key"
    create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to replace"):
        create_key_file(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary left
    assert load_keyring(path).fingerprint == load_keyring(path).fingerprint


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "secret.key"
    create_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_keyring(path)


@pytest.mark.parametrize(("body", "reason"), [
    ("not json", "not a valid nccid key file"),
    (json.dumps({"version": 1}), "not a valid nccid key file"),
    (json.dumps({"version": 2, "master_key": "AAAA"}), "version 2"),
    (json.dumps({"version": 1, "master_key": "AAAA"}), "wrong length"),
    (json.dumps({"version": 1, "master_key": "!!"}), "not valid base64"),
])
def test_damaged_key_file_is_a_clear_error(tmp_path, body, reason):
    path = tmp_path / "secret.key"
    path.write_text(body)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=reason):
        load_keyring(path)


def test_missing_key_file_says_what_to_do(tmp_path):
    with pytest.raises(KeyFileError, match="nccid init.*restore"):
        load_keyring(tmp_path / "absent.key")
